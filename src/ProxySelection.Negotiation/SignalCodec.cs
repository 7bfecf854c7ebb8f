using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Negotiation;

/// <summary>How an MP_PROXY option on a segment fared.</summary>
public enum SignalCheck
{
    /// <summary>No MP_PROXY on the segment.</summary>
    Absent,

    /// <summary>An MP_PROXY that did not parse (truncated, bad length, unknown message, duplicate...).</summary>
    Malformed,

    /// <summary>
    /// Parsed, but spec §5.5 rules it out before the tag: a form or message that §5.1 does not allow on this segment
    /// (a long form on a SYN/ACK, a short form on a SYN, a Defer on a SYN...), or proxy id 0.
    /// </summary>
    NotAllowed,

    /// <summary>Parsed, but the tag did not verify (wrong key, other flow, replay) or the form carries no tag.</summary>
    Unverified,

    Verified,
}

/// <summary>
/// Between MP_PROXY bytes and the negotiation: reads through <see cref="MpProxyCodec"/> and verifies through
/// <see cref="MpProxyKeyRing"/>; anything short of a verified option is handed on as "no signal" (spec §5.6, §9).
/// </summary>
public static class SignalCodec
{
    /// <summary>
    /// As <see cref="Read(ReadOnlySpan{byte}, MpProxySegment, MpProxyKeyRing, in MpProxyFlow, out SignalCheck)"/>, the
    /// segment type taken from the option list itself (MP_JOIN, MP_CAPABLE) and from whether <paramref name="flow"/>
    /// names a SYN/ACK.
    /// </summary>
    public static ProxySignal? Read(ReadOnlySpan<byte> tcpOptions, MpProxyKeyRing ring, in MpProxyFlow flow, out SignalCheck check) =>
        Read(tcpOptions, MpProxyCodec.SegmentOf(tcpOptions, flow.HasSynAck), ring, flow, out check);

    /// <summary>
    /// Finds MP_PROXY in a TCP option list and returns it only if it passes the checks of spec §5.5 for
    /// <paramref name="segment"/> (one option, a form and message allowed there, proxy id not 0) and verifies for
    /// <paramref name="flow"/>.
    /// </summary>
    public static ProxySignal? Read(ReadOnlySpan<byte> tcpOptions, MpProxySegment segment, MpProxyKeyRing ring, in MpProxyFlow flow, out SignalCheck check)
    {
        ArgumentNullException.ThrowIfNull(ring);
        var status = MpProxyCodec.TryFind(tcpOptions, out var option, out _);
        if (status == MpProxyStatus.NotPresent)
        {
            check = SignalCheck.Absent;
            return null;
        }

        if (status != MpProxyStatus.Ok)
        {
            check = SignalCheck.Malformed;
            return null;
        }

        if (!MpProxyCodec.IsAllowedOn(segment, option) || (option.Message != MpProxyMessage.Presence && option.ProxyId == 0))
        {
            check = SignalCheck.NotAllowed;
            return null;
        }

        // The presence form carries no tag: informational, never the basis of a decision (spec §5.5).
        if (option.Message == MpProxyMessage.Presence || !ring.Verify(option, flow))
        {
            check = SignalCheck.Unverified;
            return null;
        }

        check = SignalCheck.Verified;
        return new ProxySignal((SignalKind)option.Message, option.ProxyId, option.Priority, option.AtCapacity);
    }

    /// <summary>The §5.1 segment type of a SYN of <paramref name="kind"/> (an MPTCP v0 SYN is still an MP_CAPABLE SYN).</summary>
    public static MpProxySegment SegmentOf(SynKind kind) => kind switch
    {
        SynKind.MpJoin => MpProxySegment.JoinSyn,
        SynKind.MpCapable or SynKind.MpCapableV0 => MpProxySegment.MpCapableSyn,
        _ => MpProxySegment.TcpSyn,
    };

    /// <summary>
    /// Writes a signed MP_PROXY: the 16-byte form on a SYN (an MP_CAPABLE SYN leaves 16 bytes), the 8-byte form on a
    /// SYN/ACK (8 left), as spec §5.1 places them. Returns the bytes written.
    /// </summary>
    public static int Write(Span<byte> destination, in ProxySignal signal, MpProxyKeyRing ring, in MpProxyFlow flow)
    {
        ArgumentNullException.ThrowIfNull(ring);
        var option = flow.HasSynAck
            ? MpProxyOption.Short((MpProxyMessage)signal.Kind, signal.Priority, signal.ProxyId)
            : MpProxyOption.Long((MpProxyMessage)signal.Kind, signal.Priority, signal.ProxyId, signal.AtCapacity);
        ring.Sign(ref option, flow);
        return MpProxyCodec.Write(destination, option);
    }
}
