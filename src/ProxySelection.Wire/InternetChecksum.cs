using System.Buffers.Binary;

namespace ProxySelection.Wire;

/// <summary>
/// The Internet checksum (RFC 1071): IPv4 header checksum and TCP checksum with the v4/v6 pseudo-header, computed,
/// verified, and updated incrementally (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')).
/// </summary>
public static class InternetChecksum
{
    /// <summary>Adds <paramref name="data"/> as big-endian 16-bit words to a 32-bit running sum (odd tail padded with 0).</summary>
    public static ulong Accumulate(ReadOnlySpan<byte> data, ulong sum = 0)
    {
        // 32-bit big-endian words summed in 64 bits fold to the same 16-bit ones' complement sum.
        while (data.Length >= 8)
        {
            var word = BinaryPrimitives.ReadUInt64BigEndian(data);
            sum += (word >> 32) + (word & 0xFFFFFFFF);
            data = data[8..];
        }

        if (data.Length >= 4)
        {
            sum += BinaryPrimitives.ReadUInt32BigEndian(data);
            data = data[4..];
        }

        if (data.Length >= 2)
        {
            sum += BinaryPrimitives.ReadUInt16BigEndian(data);
            data = data[2..];
        }

        if (data.Length == 1)
        {
            sum += (uint)data[0] << 8;
        }

        return sum;
    }

    /// <summary>Folds a running sum to 16 bits (end-around carry), not complemented.</summary>
    public static ushort Fold(ulong sum)
    {
        sum = (sum & 0xFFFFFFFF) + (sum >> 32);
        sum = (sum & 0xFFFFFFFF) + (sum >> 32);
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)sum;
    }

    /// <summary>The checksum of <paramref name="data"/>: the ones' complement of its ones' complement sum.</summary>
    public static ushort Compute(ReadOnlySpan<byte> data) => (ushort)~Fold(Accumulate(data));

    /// <summary>Sum of the TCP pseudo-header (RFC 9293 section 3.1; RFC 8200 section 8.1).</summary>
    public static ulong PseudoHeaderSum(ReadOnlySpan<byte> source, ReadOnlySpan<byte> destination, int tcpLength)
    {
        var sum = Accumulate(source);
        sum = Accumulate(destination, sum);
        return sum + (ulong)tcpLength + IpPacket.ProtocolTcp;
    }

    /// <summary>
    /// The TCP checksum the segment should carry (the checksum field itself counted as zero). Throws
    /// <see cref="WireException"/> (<see cref="WireError.Truncated"/>) when the segment is shorter than a TCP header.
    /// IPv6 routing headers are not looked into: the pseudo-header uses the packet's destination address.
    /// </summary>
    public static ushort ComputeTcp(in IpPacket ip)
    {
        var segment = ip.Payload;
        if (segment.Length < TcpHeader.MinLength)
        {
            ThrowHelper.ThrowWireException(WireError.Truncated, ip.HeaderLength + segment.Length);
        }

        var sum = PseudoHeaderSum(ip.SourceAddress, ip.DestinationAddress, segment.Length);
        sum = Accumulate(segment[..16], sum);
        sum = Accumulate(segment[18..], sum);
        return (ushort)~Fold(sum);
    }

    /// <summary>True when the TCP checksum in the packet is right.</summary>
    public static bool VerifyTcp(in IpPacket ip)
    {
        var segment = ip.Payload;
        if (segment.Length < TcpHeader.MinLength)
        {
            return false;
        }

        var sum = PseudoHeaderSum(ip.SourceAddress, ip.DestinationAddress, segment.Length);
        return Fold(Accumulate(segment, sum)) == 0xFFFF;
    }

    /// <summary>The IPv4 header checksum the header (IHL*4 bytes, at least 20) should carry.</summary>
    public static ushort ComputeIpv4Header(ReadOnlySpan<byte> header)
    {
        if (header.Length < 20)
        {
            ThrowHelper.ThrowWireException(WireError.Truncated, header.Length);
        }

        var sum = Accumulate(header[..10]);
        sum = Accumulate(header[12..], sum);
        return (ushort)~Fold(sum);
    }

    /// <summary>True when the IPv4 header (IHL*4 bytes) sums to 0xFFFF.</summary>
    public static bool VerifyIpv4Header(ReadOnlySpan<byte> header) => Fold(Accumulate(header)) == 0xFFFF;

    /// <summary>Recomputes and stores the IPv4 header checksum of a parsed-valid IPv4 packet in place.</summary>
    public static WireError TryFillIpv4Header(Span<byte> packet)
    {
        var error = IpPacket.TryParseAny(packet, out var ip, out _);
        if (error != WireError.None)
        {
            return error;
        }

        if (ip.IsIPv6)
        {
            return WireError.BadIpVersion;
        }

        var header = packet[..ip.HeaderLength];
        BinaryPrimitives.WriteUInt16BigEndian(header[10..], ComputeIpv4Header(header));
        return WireError.None;
    }

    /// <summary>Recomputes and stores the TCP checksum (and for IPv4 the header checksum) of a packet in place.</summary>
    public static WireError TryFillChecksums(Span<byte> packet)
    {
        var error = IpPacket.TryParse(packet, out var ip, out _);
        if (error != WireError.None)
        {
            return error;
        }

        if (ip.Payload.Length < TcpHeader.MinLength)
        {
            return WireError.Truncated;
        }

        if (!ip.IsIPv6)
        {
            BinaryPrimitives.WriteUInt16BigEndian(packet[10..], ComputeIpv4Header(packet[..ip.HeaderLength]));
        }

        BinaryPrimitives.WriteUInt16BigEndian(packet[(ip.HeaderLength + 16)..], ComputeTcp(ip));
        return WireError.None;
    }

    /// <summary>Verifies both checksums (IPv4 header when v4, TCP always).</summary>
    public static WireError TryVerify(ReadOnlySpan<byte> packet)
    {
        var error = IpPacket.TryParse(packet, out var ip, out _);
        if (error != WireError.None)
        {
            return error;
        }

        if (!ip.IsIPv6 && !VerifyIpv4Header(packet[..ip.HeaderLength]))
        {
            return WireError.BadChecksum;
        }

        return VerifyTcp(ip) ? WireError.None : WireError.BadChecksum;
    }

    /// <summary>RFC 1624 eqn. 3 for one 16-bit word changing from <paramref name="oldWord"/> to <paramref name="newWord"/>.</summary>
    public static ushort Update(ushort checksum, ushort oldWord, ushort newWord)
    {
        ulong sum = (ushort)~checksum + (ulong)(ushort)~oldWord + newWord;
        return (ushort)~Fold(sum);
    }

    /// <summary>RFC 1624 eqn. 3 for a 32-bit value changing (e.g. a sequence number).</summary>
    public static ushort Update(ushort checksum, uint oldValue, uint newValue) =>
        Update(Update(checksum, (ushort)(oldValue >> 16), (ushort)(newValue >> 16)), (ushort)oldValue, (ushort)newValue);

    /// <summary>
    /// RFC 1624 eqn. 3 for a run of bytes at an even offset changing from <paramref name="oldData"/> to
    /// <paramref name="newData"/> (same length).
    /// </summary>
    public static ushort Update(ushort checksum, ReadOnlySpan<byte> oldData, ReadOnlySpan<byte> newData)
    {
        if (oldData.Length != newData.Length)
        {
            ThrowHelper.ThrowWireException(WireError.BadArgument, 0);
        }

        // ~m summed is the ones' complement negation of sum(m): add the complement of the folded old sum.
        var sum = (ulong)(ushort)~checksum + (ushort)~Fold(Accumulate(oldData)) + Fold(Accumulate(newData));
        return (ushort)~Fold(sum);
    }

    /// <summary>
    /// Adjusts a checksum for bytes that were added (<paramref name="added"/>, at an even offset) or, with
    /// <paramref name="removed"/>, taken away; either may be empty.
    /// </summary>
    public static ushort Adjust(ushort checksum, ReadOnlySpan<byte> added, ReadOnlySpan<byte> removed)
    {
        var sum = (ulong)(ushort)~checksum + Fold(Accumulate(added)) + (ushort)~Fold(Accumulate(removed));
        return (ushort)~Fold(sum);
    }
}
