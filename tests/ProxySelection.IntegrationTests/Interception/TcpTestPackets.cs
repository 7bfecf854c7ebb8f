using System.Buffers.Binary;

namespace ProxySelection.IntegrationTests.Interception;

/// <summary>
/// Minimal, test-only TCP/IP handling for the modified-payload test: insert a raw TCP option into a SYN and fix
/// lengths and checksums, find an option, verify a checksum. The real codec lives in ProxySelection.Wire.
/// </summary>
internal static class TcpTestPackets
{
    public static int IpHeaderLength(ReadOnlySpan<byte> ip) => (ip[0] >> 4) == 4 ? (ip[0] & 0x0F) * 4 : 40;

    public static bool IsV6(ReadOnlySpan<byte> ip) => (ip[0] >> 4) == 6;

    public static byte Protocol(ReadOnlySpan<byte> ip) => IsV6(ip) ? ip[6] : ip[9];

    public static ReadOnlySpan<byte> Tcp(ReadOnlySpan<byte> ip) => ip[IpHeaderLength(ip)..];

    public static ushort DestinationPort(ReadOnlySpan<byte> ip) => BinaryPrimitives.ReadUInt16BigEndian(Tcp(ip)[2..]);

    public static byte Flags(ReadOnlySpan<byte> ip) => Tcp(ip)[13];

    public static bool IsSyn(ReadOnlySpan<byte> ip) => Protocol(ip) == 6 && (Flags(ip) & 0x12) == 0x02;

    /// <summary>The TCP options bytes.</summary>
    public static ReadOnlySpan<byte> Options(ReadOnlySpan<byte> ip)
    {
        var tcp = Tcp(ip);
        return tcp[20..((tcp[12] >> 4) * 4)];
    }

    /// <summary>Copies <paramref name="ip"/> with <paramref name="option"/> (whole option incl. kind/length, length a
    /// multiple of 4) appended to the TCP options; fixes data offset, IP length, IPv4 header checksum, TCP checksum.</summary>
    public static byte[] InsertOption(ReadOnlySpan<byte> ip, ReadOnlySpan<byte> option)
    {
        if (option.Length % 4 != 0)
        {
            throw new ArgumentException("option length must be a multiple of 4 here", nameof(option));
        }

        var ipLen = IpHeaderLength(ip);
        var tcpHeaderLen = (ip[ipLen + 12] >> 4) * 4;
        if (tcpHeaderLen + option.Length > 60)
        {
            throw new ArgumentException("no TCP option space left", nameof(option));
        }

        var result = new byte[ip.Length + option.Length];
        ip[..(ipLen + tcpHeaderLen)].CopyTo(result);
        option.CopyTo(result.AsSpan(ipLen + tcpHeaderLen));
        ip[(ipLen + tcpHeaderLen)..].CopyTo(result.AsSpan(ipLen + tcpHeaderLen + option.Length));
        result[ipLen + 12] = (byte)((((tcpHeaderLen + option.Length) / 4) << 4) | (result[ipLen + 12] & 0x0F));
        if (IsV6(result))
        {
            BinaryPrimitives.WriteUInt16BigEndian(result.AsSpan(4), (ushort)(result.Length - 40));
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(result.AsSpan(2), (ushort)result.Length);
            result[10] = result[11] = 0;
            BinaryPrimitives.WriteUInt16BigEndian(result.AsSpan(10), Fold(Sum(result.AsSpan(0, ipLen), 0)));
        }

        result[ipLen + 16] = result[ipLen + 17] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(result.AsSpan(ipLen + 16), TcpChecksum(result));
        return result;
    }

    /// <summary>True when the TCP checksum over pseudo-header and segment verifies.</summary>
    public static bool TcpChecksumValid(ReadOnlySpan<byte> ip) => TcpChecksum(ip) == 0;

    /// <summary>The checksum over pseudo-header and segment as the packet stands (0 when an existing checksum verifies).</summary>
    private static ushort TcpChecksum(ReadOnlySpan<byte> ip)
    {
        var ipLen = IpHeaderLength(ip);
        var tcpLen = ip.Length - ipLen;
        ulong sum;
        if (IsV6(ip))
        {
            sum = Sum(ip.Slice(8, 32), 0) + (ulong)tcpLen + 6;
        }
        else
        {
            sum = Sum(ip.Slice(12, 8), 0) + (ulong)tcpLen + 6;
        }

        return Fold(Sum(ip[ipLen..], sum));
    }

    private static ulong Sum(ReadOnlySpan<byte> data, ulong sum)
    {
        var i = 0;
        for (; i + 1 < data.Length; i += 2)
        {
            sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
        }

        if (i < data.Length)
        {
            sum += (ulong)data[i] << 8;
        }

        return sum;
    }

    private static ushort Fold(ulong sum)
    {
        while (sum >> 16 != 0)
        {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }

        return (ushort)~sum;
    }
}
