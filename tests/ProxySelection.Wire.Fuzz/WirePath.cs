using ProxySelection.Wire.Pcap;

namespace ProxySelection.Wire.Fuzz;

/// <summary>Thrown when the codec breaks one of its own promises on an input (not a crash by exception, but as bad).</summary>
public sealed class InvariantException : Exception
{
    public InvariantException() { }

    public InvariantException(string message) : base(message) { }

    public InvariantException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>
/// The full parse path of the wire layer over one input: IP, TCP, every option's value, every MPTCP suboption
/// (parsed, read, written back), checksums, the option rewriter, and the pcap reader. Malformed input may only end
/// in a <see cref="WireError"/> or a <see cref="WireException"/>; anything else is a crash. Checked invariants:
/// error offsets inside the input, MPTCP parse → write gives the same bytes, insert → remove gives the packet back.
/// </summary>
public static class WirePath
{
    /// <summary>How deep the inputs went (for the run summary): options walked, MPTCP parsed / refused, inserts done.</summary>
    public sealed class Depth
    {
        public long Options { get; set; }

        public long MptcpParsed { get; set; }

        public long MptcpRefused { get; set; }

        public long Inserts { get; set; }
    }

    /// <summary>Scratch space <see cref="Exercise"/> needs: the largest input plus a full option area.</summary>
    public const int ScratchLength = Mutator.MaxInputLength + TcpHeader.MaxOptionsLength + 64;

    // An 8-byte MP_EXPERIMENTAL (low nibble non-zero), the size the proxy inserts into a SYN/ACK.
    private static readonly byte[] InsertedOption = [30, 8, 0xF1, 0x50, 0x58, 0x01, 0x02, 0x03];

    /// <summary>Runs the whole path; returns the outcome of the IP+TCP parse (None when the packet parsed).</summary>
    public static WireError Exercise(ReadOnlySpan<byte> input, Span<byte> scratch, Depth? depth = null)
    {
        _ = IpPacket.TryParseAny(input, out var anyIp, out int anyOffset);
        CheckOffset(anyOffset, input.Length, "IpPacket.TryParseAny");
        if (anyIp.Packet.Length > 0)
        {
            Touch(anyIp);
        }

        var error = TcpPacket.TryParse(input, out var packet, out int errorOffset);
        CheckOffset(errorOffset, input.Length, "TcpPacket.TryParse");
        _ = InternetChecksum.TryVerify(input);
        ExercisePcap(input);
        if (error != WireError.None)
        {
            Rewrite(input, scratch, parsed: false, depth);
            return error;
        }

        Touch(packet.Ip);
        var tcp = packet.Tcp;
        _ = tcp.SourcePort + tcp.DestinationPort + tcp.SequenceNumber + tcp.AcknowledgmentNumber + (int)tcp.Flags
            + tcp.Window + tcp.Checksum + tcp.UrgentPointer + tcp.DataOffset + tcp.Payload.Length;
        _ = InternetChecksum.VerifyTcp(packet.Ip);
        _ = InternetChecksum.ComputeTcp(packet.Ip);

        var options = tcp.Options;
        var reader = new TcpOptionReader(options);
        while (reader.MoveNext())
        {
            var option = reader.Current;
            if (option.Offset < 0 || option.Offset + option.Length > options.Length)
            {
                throw new InvariantException($"option at {option.Offset} length {option.Length} outside the {options.Length}-byte area");
            }

            ExerciseOption(option.Kind, reader.CurrentBytes, scratch, depth);
        }

        CheckOffset(reader.ErrorOffset, options.Length, "TcpOptionReader");
        _ = TcpOptionReader.Validate(options, out int validateOffset);
        CheckOffset(validateOffset, options.Length, "TcpOptionReader.Validate");
        Rewrite(input, scratch, parsed: true, depth);
        return WireError.None;
    }

    private static void Touch(in IpPacket ip)
    {
        _ = ip.Version + ip.HeaderLength + ip.Protocol + ip.ExtensionHeaderCount + ip.TrafficClass + ip.HopLimit
            + ip.TotalLength + ip.PayloadLength + ip.Identification + ip.Flags + ip.FragmentOffset + ip.HeaderChecksum
            + ip.FlowLabel + ip.Ihl + ip.SourceAddress.Length + ip.DestinationAddress.Length + ip.Payload.Length;
    }

    private static void ExerciseOption(TcpOptionKind kind, ReadOnlySpan<byte> bytes, Span<byte> scratch, Depth? depth)
    {
        if (depth is not null)
        {
            depth.Options++;
        }

        // Every reader runs on every option: a reader handed the wrong kind must refuse, not throw.
        _ = TcpOptionValues.TryReadMss(bytes, out _);
        _ = TcpOptionValues.TryReadWindowScale(bytes, out _);
        _ = TcpOptionValues.TryReadSackPermitted(bytes);
        _ = TcpOptionValues.TryReadTimestamps(bytes, out _);
        if (TcpOptionValues.TryReadSack(bytes, out var sack) == WireError.None)
        {
            for (int i = 0; i < sack.Count; i++)
            {
                _ = sack[i].Left ^ sack[i].Right;
            }
        }

        _ = TcpOptionValues.TryReadFastOpen(bytes, out _);
        _ = TcpOptionValues.TryReadMd5(bytes, out _);
        _ = TcpOptionValues.TryReadAuthentication(bytes, out _);
        if (kind != TcpOptionKind.Mptcp)
        {
            return;
        }

        _ = MpCapable.TryParse(bytes, out _);
        _ = MpJoin.TryParse(bytes, out _);
        _ = Dss.TryParse(bytes, out _);
        _ = AddAddr.TryParse(bytes, out _);
        _ = RemoveAddr.TryParse(bytes, out _);
        _ = MptcpOption.TryPeekSubtype(bytes, out _);
        var error = MptcpOption.TryParse(bytes, out var option);
        if (depth is not null)
        {
            if (error == WireError.None)
            {
                depth.MptcpParsed++;
            }
            else
            {
                depth.MptcpRefused++;
            }
        }

        if (error != WireError.None)
        {
            // The throwing entry point must throw WireException for the same input.
            try
            {
                _ = MptcpOption.Parse(bytes);
            }
            catch (WireException)
            {
                return;
            }

            throw new InvariantException($"MptcpOption.TryParse said {error} but Parse did not throw");
        }

        TouchMptcp(option);
        error = option.TryWrite(scratch, out int written);
        if (error != WireError.None)
        {
            throw new InvariantException($"a parsed {option.Subtype} does not write back: {error}");
        }

        if (!scratch[..written].SequenceEqual(bytes))
        {
            throw new InvariantException(
                $"{option.Subtype} parse → write changed the bytes: {Convert.ToHexStringLower(bytes)} → {Convert.ToHexStringLower(scratch[..written])}");
        }
    }

    private static void TouchMptcp(in MptcpOption option)
    {
        _ = option.Length;
        switch (option.Subtype)
        {
            case MptcpSubtype.MpCapable:
                var c = option.MpCapable;
                _ = c.SenderKey + c.ReceiverKey + (ulong)(c.Version + (int)c.Flags + c.DataLevelLength + c.Checksum);
                break;
            case MptcpSubtype.MpJoin:
                var j = option.MpJoin;
                _ = j.TruncatedHmac + j.ReceiverToken + j.SenderNonce + (ulong)(j.AddressId + j.Reserved + j.Hmac.Length + (j.Backup ? 1 : 0));
                break;
            case MptcpSubtype.Dss:
                var d = option.Dss;
                _ = d.DataAck + d.DataSequenceNumber + d.SubflowSequenceNumber + d.DataLevelLength + d.Checksum + d.Reserved
                    + (d.IsInfiniteMapping ? 1UL : 0);
                break;
            case MptcpSubtype.AddAddr:
                var a = option.AddAddr;
                _ = a.TruncatedHmac + (ulong)(a.AddressId + a.Port + a.Address.Length + a.Reserved + (a.Echo ? 1 : 0));
                break;
            case MptcpSubtype.RemoveAddr:
                _ = option.RemoveAddr.AddressIds.Length + option.RemoveAddr.Reserved;
                break;
            case MptcpSubtype.MpPrio:
                _ = option.MpPrio.AddressId + option.MpPrio.Reserved;
                break;
            case MptcpSubtype.MpFail:
                _ = option.MpFail.DataSequenceNumber + option.MpFail.Reserved;
                break;
            case MptcpSubtype.MpFastClose:
                _ = option.MpFastClose.ReceiverKey + option.MpFastClose.Reserved;
                break;
            case MptcpSubtype.MpTcpRst:
                _ = (int)option.MpTcpRst.Flags + (int)option.MpTcpRst.Reason;
                break;
            case MptcpSubtype.MpExperimental:
                _ = option.MpExperimental.LowNibble + option.MpExperimental.Data.Length;
                break;
            default:
                throw new InvariantException($"parsed an MPTCP option of subtype {option.Subtype}");
        }
    }

    /// <summary>
    /// Inserts the 8-byte option and removes it again (the SYN/ACK rewrite the proxy does); on a packet that parsed
    /// and had room, the round trip must give the original bytes, and a valid checksum must stay valid.
    /// </summary>
    private static void Rewrite(ReadOnlySpan<byte> input, Span<byte> scratch, bool parsed, Depth? depth)
    {
        var buffer = scratch[..Math.Min(scratch.Length, input.Length + TcpHeader.MaxOptionsLength)];
        input.CopyTo(buffer);
        bool checksumsValid = parsed && InternetChecksum.TryVerify(input) == WireError.None;
        var error = OptionRewriter.TryInsert(buffer, input.Length, InsertedOption, out int grown);
        if (error == WireError.None)
        {
            if (depth is not null)
            {
                depth.Inserts++;
            }

            if (parsed && checksumsValid && InternetChecksum.TryVerify(buffer[..grown]) != WireError.None)
            {
                throw new InvariantException("checksums valid before the insert are not valid after it");
            }

            error = TcpPacket.TryParse(buffer[..grown], out var grownPacket, out _);
            if (parsed && error != WireError.None)
            {
                throw new InvariantException($"the packet does not parse after an insert: {error}");
            }

            if (error == WireError.None)
            {
                var find = TcpOptionReader.TryFind(grownPacket.Tcp.Options, TcpOptionKind.Mptcp, out var inserted);
                if (find == WireError.None)
                {
                    error = OptionRewriter.TryRemove(buffer, grown, inserted.Offset, out int shrunk);
                    // Bytes after the IP length (link padding) may be dropped; everything up to it must be back.
                    if (parsed && error == WireError.None && (shrunk > input.Length || !buffer[..shrunk].SequenceEqual(input[..shrunk])))
                    {
                        throw new InvariantException("insert then remove did not give the packet back");
                    }
                }
            }
        }

        input.CopyTo(buffer);
        _ = OptionRewriter.TryRemove(buffer, input.Length, TcpOptionKind.Mptcp, out _, ChecksumUpdate.Recompute);
        input.CopyTo(buffer);
        _ = OptionRewriter.TryInsert(buffer, input.Length, InsertedOption, out _, ChecksumUpdate.Recompute);
        input.CopyTo(buffer);
        _ = InternetChecksum.TryFillChecksums(buffer[..input.Length]);
    }

    /// <summary>The input read as a pcap file (random inputs rarely are one; mutated pcaps are fuzzed in the Host tests).</summary>
    private static void ExercisePcap(ReadOnlySpan<byte> input)
    {
        if (PcapReader.TryCreate(input, out var reader) != PcapStatus.Ok)
        {
            return;
        }

        while (reader.ReadNext(out var record) == PcapStatus.Ok)
        {
            _ = record.TryGetIpPacket(out _);
        }
    }

    private static void CheckOffset(int offset, int length, string where)
    {
        if (offset < 0 || offset > length)
        {
            throw new InvariantException($"{where} reported error offset {offset} outside 0..{length}");
        }
    }
}
