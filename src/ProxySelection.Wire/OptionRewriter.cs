using System.Buffers.Binary;

namespace ProxySelection.Wire;

/// <summary>How <see cref="OptionRewriter"/> brings the TCP checksum up to date.</summary>
public enum ChecksumUpdate
{
    /// <summary>RFC 1624 incremental update of the checksum in the packet (a wrong checksum stays wrong).</summary>
    Incremental = 0,
    /// <summary>Recompute the TCP checksum over the whole segment.</summary>
    Recompute = 1,
}

/// <summary>
/// Inserts or removes one TCP option in a packet in place, in the caller's buffer, and fixes the TCP data offset,
/// the IPv4 total length or IPv6 payload length, the IPv4 header checksum and the TCP checksum. The option area
/// changes by a multiple of 4 bytes: NOPs pad an inserted option (before it) and are taken away with a removed
/// one, so inserting then removing the same option gives the original packet back. Nothing is changed when a call
/// refuses.
/// </summary>
public static class OptionRewriter
{
    /// <summary>
    /// Inserts <paramref name="option"/> (whole option bytes: kind, length, data; or a single NOP/EOL) at the start
    /// of the TCP option area. <paramref name="buffer"/> holds the packet in its first <paramref name="packetLength"/>
    /// bytes and must have room for the growth; <paramref name="newLength"/> is the packet's new length.
    /// </summary>
    public static WireError TryInsert(Span<byte> buffer, int packetLength, ReadOnlySpan<byte> option, out int newLength,
        ChecksumUpdate checksumUpdate = ChecksumUpdate.Incremental)
    {
        newLength = 0;
        var error = CheckOption(option);
        if (error != WireError.None)
        {
            return error;
        }

        error = TryLocate(buffer, packetLength, out var layout);
        if (error != WireError.None)
        {
            return error;
        }

        var pad = (4 - (option.Length & 3)) & 3;
        var grow = pad + option.Length;
        if (layout.TcpHeaderLength + grow > TcpHeader.MaxLength)
        {
            return WireError.OptionSpaceExceeded;
        }

        if (layout.PacketLength + grow > buffer.Length)
        {
            return WireError.BufferTooSmall;
        }

        if (layout.IpLengthField + grow > ushort.MaxValue)
        {
            return WireError.BadTotalLength;
        }

        var optionsStart = layout.TcpOffset + TcpHeader.MinLength;
        buffer[optionsStart..layout.PacketLength].CopyTo(buffer[(optionsStart + grow)..]);
        var inserted = buffer.Slice(optionsStart, grow);
        inserted[..pad].Fill((byte)TcpOptionKind.Nop);
        option.CopyTo(inserted[pad..]);

        // The shifted bytes moved by a multiple of 4, so their 16-bit alignment and their sum are unchanged.
        var checksumDelta = Sum(inserted, oddOffset: false);
        Commit(buffer, layout, grow, checksumDelta, checksumUpdate);
        newLength = layout.PacketLength + grow;
        return WireError.None;
    }

    /// <summary>Inserts an MPTCP suboption; see <see cref="TryInsert(Span{byte}, int, ReadOnlySpan{byte}, out int, ChecksumUpdate)"/>.</summary>
    public static WireError TryInsertMptcp<T>(Span<byte> buffer, int packetLength, in T option, out int newLength,
        ChecksumUpdate checksumUpdate = ChecksumUpdate.Incremental)
        where T : struct, IMptcpSuboption
    {
        newLength = 0;
        Span<byte> bytes = stackalloc byte[TcpHeader.MaxOptionsLength];
        var error = option.TryWrite(bytes, out var written);
        return error != WireError.None
            ? error
            : TryInsert(buffer, packetLength, bytes[..written], out newLength, checksumUpdate);
    }

    /// <summary>
    /// Removes the option that starts at <paramref name="optionOffset"/> in the TCP option area (a
    /// <see cref="TcpOption.Offset"/>), with up to 3 NOPs next to it (those before it first) to keep the area a
    /// multiple of 4; when there are not enough NOPs, the option's first length%4 bytes are turned into NOPs and
    /// the rest removed.
    /// </summary>
    public static WireError TryRemove(Span<byte> buffer, int packetLength, int optionOffset, out int newLength,
        ChecksumUpdate checksumUpdate = ChecksumUpdate.Incremental)
    {
        newLength = 0;
        var error = TryLocate(buffer, packetLength, out var layout);
        if (error != WireError.None)
        {
            return error;
        }

        var optionsStart = layout.TcpOffset + TcpHeader.MinLength;
        var area = buffer[optionsStart..(layout.TcpOffset + layout.TcpHeaderLength)];
        var reader = new TcpOptionReader(area);
        var nopRunStart = -1;
        var found = false;
        TcpOption target = default;
        while (reader.MoveNext())
        {
            var current = reader.Current;
            if (current.Offset == optionOffset)
            {
                target = current;
                found = true;
                break;
            }

            if (current.Kind == TcpOptionKind.Nop)
            {
                nopRunStart = nopRunStart < 0 ? current.Offset : nopRunStart;
            }
            else
            {
                nopRunStart = -1;
            }
        }

        if (!found)
        {
            return WireError.OptionNotFound;
        }

        var nopsBefore = nopRunStart < 0 ? 0 : optionOffset - nopRunStart;
        var end = target.Offset + target.Length;
        var nopsAfter = 0;

        // After EOL the bytes are padding, not options, even when they read as NOPs.
        while (target.Kind != TcpOptionKind.EndOfList && nopsAfter < 3 && end + nopsAfter < area.Length
            && area[end + nopsAfter] == (byte)TcpOptionKind.Nop)
        {
            nopsAfter++;
        }

        var need = (4 - (target.Length & 3)) & 3;
        int removeStart;
        int removeLength;
        ulong checksumDelta = 0;
        if (need <= nopsBefore + nopsAfter)
        {
            var takeBefore = Math.Min(need, nopsBefore);
            removeStart = target.Offset - takeBefore;
            removeLength = target.Length + need;
        }
        else
        {
            // Not enough NOPs around: the first length%4 bytes become NOPs, the rest (a multiple of 4) goes.
            var keep = target.Length & 3;
            var turned = area.Slice(target.Offset, keep);
            checksumDelta += Negate(Sum(turned, oddOffset: (target.Offset & 1) != 0));
            turned.Fill((byte)TcpOptionKind.Nop);
            checksumDelta += Sum(turned, oddOffset: (target.Offset & 1) != 0);
            removeStart = target.Offset + keep;
            removeLength = target.Length - keep;
        }

        var removed = area.Slice(removeStart, removeLength);
        checksumDelta += Negate(Sum(removed, oddOffset: (removeStart & 1) != 0));
        var from = optionsStart + removeStart + removeLength;
        buffer[from..layout.PacketLength].CopyTo(buffer[(optionsStart + removeStart)..]);
        Commit(buffer, layout, -removeLength, checksumDelta, checksumUpdate);
        newLength = layout.PacketLength - removeLength;
        return WireError.None;
    }

    /// <summary>Removes the first option of <paramref name="kind"/>; see <see cref="TryRemove(Span{byte}, int, int, out int, ChecksumUpdate)"/>.</summary>
    public static WireError TryRemove(Span<byte> buffer, int packetLength, TcpOptionKind kind, out int newLength,
        ChecksumUpdate checksumUpdate = ChecksumUpdate.Incremental)
    {
        newLength = 0;
        var error = TcpPacket.TryParse(buffer[..Math.Clamp(packetLength, 0, buffer.Length)], out var packet);
        if (error != WireError.None)
        {
            return error;
        }

        error = TcpOptionReader.TryFind(packet.Tcp.Options, kind, out var option);
        return error != WireError.None
            ? error
            : TryRemove(buffer, packetLength, option.Offset, out newLength, checksumUpdate);
    }

    private static WireError CheckOption(ReadOnlySpan<byte> option)
    {
        if (option.IsEmpty || option.Length > TcpHeader.MaxOptionsLength)
        {
            return option.IsEmpty ? WireError.BadArgument : WireError.OptionSpaceExceeded;
        }

        if (option[0] <= 1)
        {
            return option.Length == 1 ? WireError.None : WireError.BadArgument;
        }

        return option.Length >= 2 && option[1] == option.Length ? WireError.None : WireError.BadOptionLength;
    }

    private static WireError TryLocate(Span<byte> buffer, int packetLength, out Layout layout)
    {
        layout = default;
        if (packetLength < 0 || packetLength > buffer.Length)
        {
            return WireError.BadArgument;
        }

        var error = TcpPacket.TryParse(buffer[..packetLength], out var packet, out _);
        if (error != WireError.None)
        {
            return error;
        }

        // A malformed option area is not rewritten: where the new option would land is not well defined.
        error = TcpOptionReader.Validate(packet.Tcp.Options, out _);
        if (error != WireError.None)
        {
            return error;
        }

        var ip = packet.Ip;
        layout = new Layout(
            ip.IsIPv6,
            packet.TcpOffset,
            packet.Tcp.HeaderLength,
            ip.PacketLength,
            ip.IsIPv6 ? ip.PayloadLength : ip.TotalLength);
        return WireError.None;
    }

    private static void Commit(Span<byte> buffer, in Layout layout, int delta, ulong checksumDelta, ChecksumUpdate checksumUpdate)
    {
        var tcp = buffer[layout.TcpOffset..];
        var oldSegmentLength = layout.PacketLength - layout.TcpOffset;
        var oldWord = BinaryPrimitives.ReadUInt16BigEndian(tcp[12..]);
        var newHeaderLength = layout.TcpHeaderLength + delta;
        var newWord = (ushort)((oldWord & 0x0FFF) | ((newHeaderLength / 4) << 12));
        BinaryPrimitives.WriteUInt16BigEndian(tcp[12..], newWord);

        var newIpLength = (ushort)(layout.IpLengthField + delta);
        if (layout.IsIPv6)
        {
            BinaryPrimitives.WriteUInt16BigEndian(buffer[4..], newIpLength);
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(buffer[2..], newIpLength);
            var headerChecksum = BinaryPrimitives.ReadUInt16BigEndian(buffer[10..]);
            BinaryPrimitives.WriteUInt16BigEndian(buffer[10..],
                InternetChecksum.Update(headerChecksum, (ushort)layout.IpLengthField, newIpLength));
        }

        if (checksumUpdate == ChecksumUpdate.Recompute)
        {
            var packet = IpPacket.Parse(buffer[..(layout.PacketLength + delta)]);
            BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], InternetChecksum.ComputeTcp(packet));
            return;
        }

        // RFC 1624 eqn. 3 over everything that changed: option bytes, the data offset word, the pseudo-header length.
        var checksum = BinaryPrimitives.ReadUInt16BigEndian(tcp[16..]);
        var sum = (ulong)(ushort)~checksum + checksumDelta
            + (ushort)~oldWord + newWord
            + (ushort)~(ushort)oldSegmentLength + (ushort)(oldSegmentLength + delta);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], (ushort)~InternetChecksum.Fold(sum));
    }

    /// <summary>Folded 16-bit sum of bytes that sit at an even or odd offset of the segment.</summary>
    private static ushort Sum(ReadOnlySpan<byte> data, bool oddOffset)
    {
        var sum = InternetChecksum.Fold(InternetChecksum.Accumulate(data));

        // Ones' complement sums commute with byte swapping (RFC 1071 section 2(B)).
        return oddOffset ? BinaryPrimitives.ReverseEndianness(sum) : sum;
    }

    private static ushort Negate(ushort value) => (ushort)~value;

    private readonly record struct Layout(bool IsIPv6, int TcpOffset, int TcpHeaderLength,
        int PacketLength, int IpLengthField);
}
