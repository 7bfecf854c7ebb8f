using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;

namespace ProxySelection.Wire.MpProxy;

/// <summary>
/// Reads and writes MP_PROXY (spec §5): TCP option kind 30, MPTCP subtype 0xF, version 1, experiment 0xA5.
/// Allocation-free; reading never throws and returns a status instead.
/// </summary>
public static class MpProxyCodec
{
    /// <summary>
    /// Parses one option starting at its kind byte; <paramref name="option"/> may run on past the option.
    /// On <see cref="MpProxyStatus.NotFromProxy"/> the fields are filled but must be treated as absent.
    /// </summary>
    public static MpProxyStatus TryRead(ReadOnlySpan<byte> option, out MpProxyOption result)
    {
        result = default;
        if (option.Length < 2)
        {
            return MpProxyStatus.Truncated;
        }

        if (option[0] != MpProxyOption.Kind)
        {
            return MpProxyStatus.NotMptcp;
        }

        if (option.Length < 3)
        {
            return MpProxyStatus.Truncated;
        }

        if (option[2] >> 4 != MpProxyOption.Subtype)
        {
            return MpProxyStatus.NotMpProxy;
        }

        // The experiment id and the version come before the length (spec §5.6): another experiment's subtype-0xF
        // option, or another version's MP_PROXY, whatever its layout, is skipped rather than read as a damaged one.
        int length = option[1];
        if (length < MpProxyOption.PresenceLength)
        {
            return MpProxyStatus.BadLength;
        }

        if (option.Length < MpProxyOption.PresenceLength)
        {
            return MpProxyStatus.Truncated;
        }

        if (option[3] != MpProxyOption.ExperimentId)
        {
            return MpProxyStatus.UnknownExperiment;
        }

        var version = (byte)(option[2] & 0x0F);
        if (version != MpProxyOption.CurrentVersion)
        {
            return MpProxyStatus.UnknownVersion;
        }

        if (length is not (MpProxyOption.PresenceLength or MpProxyOption.ShortLength or MpProxyOption.LongLength))
        {
            return MpProxyStatus.BadLength;
        }

        if (option.Length < length)
        {
            return MpProxyStatus.Truncated;
        }

        if (length == MpProxyOption.PresenceLength)
        {
            result = MpProxyOption.Presence();
            return MpProxyStatus.Ok;
        }

        byte info = option[4];
        int kind = (info >> 4) & 0x7;
        if (kind is < (int)MpProxyMessage.Probe or > (int)MpProxyMessage.Upgrade)
        {
            return MpProxyStatus.UnknownMessage;
        }

        result = length == MpProxyOption.ShortLength
            ? MpProxyOption.FromWire((byte)length, version, info, option[5], 0, 0, BinaryPrimitives.ReadUInt16BigEndian(option[6..]))
            : MpProxyOption.FromWire((byte)length, version, info, option[5], option[6], option[7], BinaryPrimitives.ReadUInt64BigEndian(option[8..]));
        return (info & 0x80) == 0 ? MpProxyStatus.NotFromProxy : MpProxyStatus.Ok;
    }

    /// <summary>
    /// Finds the MP_PROXY in a TCP option list (the bytes after the fixed 20-byte header). Other options are
    /// skipped, and so are subtype-0xF options that are not MP_PROXY (another experiment id, or too short to
    /// carry one): they neither count as a duplicate nor affect the MP_PROXY beside them (spec §5.6). More than
    /// one option with experiment id 0xA5 is <see cref="MpProxyStatus.Duplicate"/>; one that fails to read
    /// gives its status, and either way the segment counts as carrying none.
    /// </summary>
    public static MpProxyStatus TryFind(ReadOnlySpan<byte> tcpOptions, out MpProxyOption result, out int offset)
    {
        result = default;
        offset = -1;
        var status = MpProxyStatus.NotPresent;
        int i = 0;
        while (i < tcpOptions.Length)
        {
            byte kind = tcpOptions[i];
            if (kind == 0)
            {
                break; // End of option list (RFC 9293 §3.1).
            }

            if (kind == 1)
            {
                i++;
                continue;
            }

            if (i + 1 >= tcpOptions.Length || tcpOptions[i + 1] < 2 || i + tcpOptions[i + 1] > tcpOptions.Length)
            {
                result = default;
                offset = -1;
                return MpProxyStatus.MalformedOptionList;
            }

            int length = tcpOptions[i + 1];
            if (IsOurExperiment(tcpOptions.Slice(i, length)))
            {
                if (status != MpProxyStatus.NotPresent)
                {
                    result = default;
                    offset = -1;
                    return MpProxyStatus.Duplicate;
                }

                status = TryRead(tcpOptions.Slice(i, length), out result);
                offset = i;
            }

            i += length;
        }

        if (status != MpProxyStatus.Ok)
        {
            result = default;
        }

        return status;
    }

    /// <summary>
    /// Whether §5.1 allows this form and message on <paramref name="segment"/> (a receiver treats any other
    /// combination as absent, §5.5). One layout per segment type: long on a SYN, short on a SYN/ACK and an
    /// MP_JOIN SYN, presence on an MP_JOIN SYN/ACK.
    /// </summary>
    public static bool IsAllowedOn(MpProxySegment segment, in MpProxyOption option) => segment switch
    {
        MpProxySegment.MpCapableSyn => option.WireLength == MpProxyOption.LongLength
            && option.Message is MpProxyMessage.Probe or MpProxyMessage.Upgrade or MpProxyMessage.Claim,
        MpProxySegment.TcpSyn => option.WireLength == MpProxyOption.LongLength && option.Message == MpProxyMessage.Claim,
        MpProxySegment.SynAck => option.WireLength == MpProxyOption.ShortLength
            && option.Message is MpProxyMessage.Claim or MpProxyMessage.Defer,
        MpProxySegment.JoinSyn => option.WireLength == MpProxyOption.ShortLength && option.Message == MpProxyMessage.Upgrade,
        MpProxySegment.JoinSynAck => option.WireLength == MpProxyOption.PresenceLength,
        _ => false,
    };

    /// <summary>
    /// The §5.1 segment type of a SYN (<paramref name="synAck"/> false) or SYN/ACK from its own option list: MP_JOIN
    /// (MPTCP subtype 1) or MP_CAPABLE (subtype 0) when one is there. A malformed list gives the plain type.
    /// </summary>
    public static MpProxySegment SegmentOf(ReadOnlySpan<byte> tcpOptions, bool synAck)
    {
        if (TcpOptionReader.TryFindMptcp(tcpOptions, MptcpSubtype.MpJoin, out _) == WireError.None)
        {
            return synAck ? MpProxySegment.JoinSynAck : MpProxySegment.JoinSyn;
        }

        if (synAck)
        {
            return MpProxySegment.SynAck;
        }

        return TcpOptionReader.TryFindMptcp(tcpOptions, MptcpSubtype.MpCapable, out _) == WireError.None
            ? MpProxySegment.MpCapableSyn
            : MpProxySegment.TcpSyn;
    }

    /// <summary>Kind 30, subtype 0xF, long enough for an experiment id, and that id is 0xA5: counts toward Duplicate.</summary>
    private static bool IsOurExperiment(ReadOnlySpan<byte> option) =>
        option.Length >= MpProxyOption.PresenceLength
        && option[0] == MpProxyOption.Kind
        && option[2] >> 4 == MpProxyOption.Subtype
        && option[3] == MpProxyOption.ExperimentId
        // Another version beside this one is a sender in transition, not a second signal (spec §5.6): skipped.
        && (option[2] & 0x0F) == MpProxyOption.CurrentVersion;

    /// <summary>Writes the option; returns its length. Throws <see cref="WireException"/> when it does not fit.</summary>
    public static int Write(Span<byte> destination, in MpProxyOption option)
    {
        if (!TryWrite(destination, option, out int written))
        {
            ThrowNoRoom(destination.Length, option.WireLength);
        }

        return written;
    }

    public static bool TryWrite(Span<byte> destination, in MpProxyOption option, out int written)
    {
        int length = option.WireLength;
        if (length is not (MpProxyOption.PresenceLength or MpProxyOption.ShortLength or MpProxyOption.LongLength) || destination.Length < length)
        {
            written = 0;
            return false;
        }

        WriteHeader(destination, option);
        if (length == MpProxyOption.ShortLength)
        {
            BinaryPrimitives.WriteUInt16BigEndian(destination[6..], (ushort)option.Tag);
        }
        else if (length == MpProxyOption.LongLength)
        {
            BinaryPrimitives.WriteUInt64BigEndian(destination[8..], option.Tag);
        }

        written = length;
        return true;
    }

    /// <summary>Writes every byte but the tag (what the tag covers); returns how many: 4, 6 or 8.</summary>
    internal static int WriteHeader(Span<byte> destination, in MpProxyOption option)
    {
        destination[0] = MpProxyOption.Kind;
        destination[1] = (byte)option.WireLength;
        destination[2] = (byte)((MpProxyOption.Subtype << 4) | option.Version);
        destination[3] = MpProxyOption.ExperimentId;
        if (option.WireLength == MpProxyOption.PresenceLength)
        {
            return 4;
        }

        destination[4] = option.InfoByte;
        destination[5] = option.ProxyId;
        if (option.WireLength == MpProxyOption.ShortLength)
        {
            return 6;
        }

        destination[6] = option.KeyId;
        destination[7] = option.Flags;
        return 8;
    }

    [DoesNotReturn]
    private static void ThrowNoRoom(int room, int needed) =>
        throw new WireException(WireError.OptionSpaceExceeded, 0, $"MP_PROXY needs {needed} bytes, {room} available");
}
