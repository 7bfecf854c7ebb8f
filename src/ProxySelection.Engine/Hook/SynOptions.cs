using ProxySelection.Negotiation;
using ProxySelection.Wire;

namespace ProxySelection.Engine.Hook;

/// <summary>What a SYN's options say about it, read once per SYN without allocating.</summary>
internal static class SynOptions
{
    /// <summary>The reason a SYN signed with TCP-MD5 (RFC 2385) or TCP-AO (RFC 5925) passes untouched: the negotiator's name for it.</summary>
    public const string Authenticated = nameof(DecisionReason.TcpAuthOption);

    /// <summary>The reason an MPTCP v0 (RFC 6824) MP_CAPABLE SYN passes untouched: the negotiator's name for it.</summary>
    public const string MptcpV0 = nameof(DecisionReason.MptcpV0);

    /// <summary>
    /// The SYN's kind (and an MP_JOIN's token). <paramref name="untouched"/> is set when the SYN must pass as it came:
    /// a signed segment cannot be terminated by a proxy (spec), and a v0 MP_CAPABLE is a protocol this proxy does not speak.
    /// </summary>
    public static SynKind Classify(ReadOnlySpan<byte> options, out uint token, out string? untouched)
    {
        token = 0;
        untouched = null;
        var kind = SynKind.Tcp;
        foreach (var option in new TcpOptionReader(options))
        {
            if (option.Kind is TcpOptionKind.Md5Signature or TcpOptionKind.Authentication)
            {
                untouched = Authenticated;
                continue;
            }

            if (option.Kind != TcpOptionKind.Mptcp || kind != SynKind.Tcp
                || MptcpOption.TryParse(option.Slice(options), out var mptcp) != WireError.None)
            {
                continue;
            }

            if (mptcp.Subtype == MptcpSubtype.MpCapable)
            {
                kind = SynKind.MpCapable;
                if (mptcp.MpCapable.Version == 0)
                {
                    untouched ??= MptcpV0;
                }
            }
            else if (mptcp.Subtype == MptcpSubtype.MpJoin && mptcp.MpJoin.Form == MpJoinForm.Syn)
            {
                token = mptcp.MpJoin.ReceiverToken;
                kind = SynKind.MpJoin;
            }
        }

        return kind;
    }

    /// <summary>Whether the options carry an MP_CAPABLE (a SYN/ACK's answer to MPTCP).</summary>
    public static bool IsMpCapable(ReadOnlySpan<byte> options) => Classify(options, out _, out _) == SynKind.MpCapable;
}
