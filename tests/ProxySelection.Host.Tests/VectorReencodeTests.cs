using ProxySelection.Wire;

namespace ProxySelection.Host.Tests;

/// <summary>Every option of every vector packet, parsed to typed values and written back, gives the original bytes.</summary>
public class VectorReencodeTests
{
    [TestCaseSource(typeof(VectorFiles), nameof(VectorFiles.RecordCases))]
    public void ParseThenWrite_EveryOption_ReproducesTheOptionArea(VectorRecord? record)
    {
        if (record is null)
        {
            VectorFiles.RequireDirectory();
            return;
        }

        var packet = record.Packet;
        Assert.That(TcpPacket.TryParse(packet, out var parsed), Is.EqualTo(WireError.None));
        var area = parsed.Tcp.Options;
        var output = new byte[TcpHeader.MaxOptionsLength];
        var writer = new TcpOptionWriter(output);
        var reader = new TcpOptionReader(area);
        while (reader.MoveNext())
        {
            Assert.That(Rewrite(ref writer, reader.Current.Kind, reader.CurrentBytes), Is.EqualTo(WireError.None), $"option at {reader.Current.Offset}");
        }

        Assert.That(reader.Error, Is.EqualTo(WireError.None));
        // After EOL (or at the end) the rest of the area is padding the writer does not produce.
        Assert.That(writer.Written.ToArray(), Is.EqualTo(area[..reader.Position].ToArray()));
    }

    private static WireError Rewrite(ref TcpOptionWriter writer, TcpOptionKind kind, ReadOnlySpan<byte> bytes)
    {
        switch (kind)
        {
            case TcpOptionKind.EndOfList:
                return writer.TryWriteEndOfList();
            case TcpOptionKind.Nop:
                return writer.TryWriteNop();
            case TcpOptionKind.Mss:
                return TcpOptionValues.TryReadMss(bytes, out var mss) is var e1 && e1 != WireError.None ? e1 : writer.TryWriteMss(mss);
            case TcpOptionKind.WindowScale:
                return TcpOptionValues.TryReadWindowScale(bytes, out var shift) is var e2 && e2 != WireError.None ? e2 : writer.TryWriteWindowScale(shift);
            case TcpOptionKind.SackPermitted:
                return TcpOptionValues.TryReadSackPermitted(bytes) is var e3 && e3 != WireError.None ? e3 : writer.TryWriteSackPermitted();
            case TcpOptionKind.Timestamps:
                return TcpOptionValues.TryReadTimestamps(bytes, out var ts) is var e4 && e4 != WireError.None ? e4 : writer.TryWriteTimestamps(ts.Value, ts.EchoReply);
            case TcpOptionKind.Sack:
                {
                    var error = TcpOptionValues.TryReadSack(bytes, out var sack);
                    if (error != WireError.None)
                    {
                        return error;
                    }

                    var blocks = new SackBlock[sack.Count];
                    for (int i = 0; i < sack.Count; i++)
                    {
                        blocks[i] = sack[i];
                    }

                    return writer.TryWriteSack(blocks);
                }

            case TcpOptionKind.Mptcp:
                {
                    var error = MptcpOption.TryParse(bytes, out var option);
                    return error != WireError.None ? error : writer.TryWriteMptcp(option);
                }

            default:
                return writer.TryWriteRaw(bytes[0], bytes[2..]);
        }
    }
}
