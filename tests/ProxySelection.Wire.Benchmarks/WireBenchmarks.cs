using BenchmarkDotNet.Attributes;

namespace ProxySelection.Wire.Benchmarks;

/// <summary>
/// The two hot paths of a proxy on the SYN path: reading every option of a client's MP_CAPABLE SYN, and inserting an
/// 8-byte option into the SYN/ACK with both checksums fixed. Targets: under 100 ns and 300 ns, no allocation.
/// </summary>
[MemoryDiagnoser]
[ShortRunJob]
public class WireBenchmarks
{
    // tests/vectors mpc-basic-v4-001: Linux 6.18 MP_CAPABLE SYN (MSS, SACK_PERM, timestamps, NOP, window scale, MP_CAPABLE).
    private const string MpCapableSyn =
        "450000407ba84000400632e8c6120001c61200029ee64650748ffe9200000000b002faf0df2f0000020405b40402080afbba5e97000000000103030a1e040101";

    // tests/vectors mpc-basic-v4-002: its SYN/ACK, 32 bytes of options (8 left).
    private const string MpCapableSynAck =
        "45000048000040004006ae88c6120002c612000146509ee670e480ae748ffe93d012fe88fb460000020405b40402080a3696ac83fbba5e970103030a1e0c01019b5e1439fd423ea8";

    // 8 bytes: MP_EXPERIMENTAL with a non-zero low nibble, the size left in a stock SYN/ACK.
    private static readonly byte[] Option = [30, 8, 0xF1, 0x50, 0x58, 0x01, 0x02, 0x03];

    private readonly byte[] _syn = Convert.FromHexString(MpCapableSyn);
    private readonly byte[] _synAck = Convert.FromHexString(MpCapableSynAck);
    private readonly byte[] _buffer = new byte[128];

    [GlobalSetup]
    public void Check()
    {
        if (ParseSynOptions() != 6)
        {
            throw new InvalidOperationException("the SYN did not parse into its six options");
        }

        if (InsertIntoSynAck() != _synAck.Length + Option.Length || InternetChecksum.TryVerify(_buffer.AsSpan(0, _synAck.Length + Option.Length)) != WireError.None)
        {
            throw new InvalidOperationException("the SYN/ACK insert failed or left a bad checksum");
        }
    }

    /// <summary>IP and TCP headers, then every option decoded to its values (MPTCP included). Returns the option count.</summary>
    [Benchmark]
    public int ParseSynOptions()
    {
        if (TcpPacket.TryParse(_syn, out var packet) != WireError.None)
        {
            return -1;
        }

        int count = 0;
        ulong sink = 0;
        var reader = packet.Tcp.GetOptionReader();
        while (reader.MoveNext())
        {
            var bytes = reader.CurrentBytes;
            switch (reader.Current.Kind)
            {
                case TcpOptionKind.Mss when TcpOptionValues.TryReadMss(bytes, out var mss) == WireError.None:
                    sink += mss;
                    break;
                case TcpOptionKind.WindowScale when TcpOptionValues.TryReadWindowScale(bytes, out var shift) == WireError.None:
                    sink += shift;
                    break;
                case TcpOptionKind.Timestamps when TcpOptionValues.TryReadTimestamps(bytes, out var ts) == WireError.None:
                    sink += ts.Value;
                    break;
                case TcpOptionKind.SackPermitted when TcpOptionValues.TryReadSackPermitted(bytes) == WireError.None:
                    sink++;
                    break;
                case TcpOptionKind.Mptcp when MptcpOption.TryParse(bytes, out var mptcp) == WireError.None:
                    sink += (ulong)mptcp.MpCapable.Flags;
                    break;
                case TcpOptionKind.Nop:
                    break;
                default:
                    return -1;
            }

            count++;
        }

        return sink == 0 ? -1 : count;
    }

    /// <summary>Copies the SYN/ACK into a buffer and inserts the option (data offset, IP length, both checksums).</summary>
    [Benchmark]
    public int InsertIntoSynAck()
    {
        _synAck.CopyTo(_buffer.AsSpan());
        return OptionRewriter.TryInsert(_buffer, _synAck.Length, Option, out int length) == WireError.None ? length : -1;
    }

    /// <summary>The same with the TCP checksum recomputed over the segment instead of updated (RFC 1624).</summary>
    [Benchmark]
    public int InsertIntoSynAckRecomputingChecksum()
    {
        _synAck.CopyTo(_buffer.AsSpan());
        return OptionRewriter.TryInsert(_buffer, _synAck.Length, Option, out int length, ChecksumUpdate.Recompute) == WireError.None ? length : -1;
    }
}
