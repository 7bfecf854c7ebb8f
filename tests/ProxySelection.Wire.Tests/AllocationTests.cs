namespace ProxySelection.Wire.Tests;

/// <summary>The wire layer allocates nothing per packet (measured with the thread's allocation counter, not time).</summary>
public class AllocationTests
{
    [Test]
    public void ParseEveryOption_RealPackets_AllocatesNothing()
    {
        var packets = VectorPackets.Packets.Select(p => p.Packet).ToArray();
        ParseAll(packets);
        var before = GC.GetAllocatedBytesForCurrentThread();
        var checksum = ParseAll(packets);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(allocated, Is.Zero);
        Assert.That(checksum, Is.Not.Zero);
    }

    [Test]
    public void InsertAndRemove_RealSynAck_AllocatesNothingAndRestoresPacket()
    {
        var original = VectorPackets.Get("mpc-basic-v4-002");
        var buffer = PacketBuilder.WithSpare(original, 40);
        var length = original.Length;
        var warmup = RewriteTwice(buffer, length);
        var before = GC.GetAllocatedBytesForCurrentThread();
        var error = RewriteTwice(buffer, length);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That((warmup, error), Is.EqualTo((WireError.None, WireError.None)));
        Assert.That(allocated, Is.Zero);
        Assert.That(buffer.AsSpan(0, length).ToArray(), Is.EqualTo(original));
    }

    private static WireError RewriteTwice(byte[] buffer, int length)
    {
        ReadOnlySpan<byte> option = [30, 8, 0xF0, 1, 2, 3, 4, 5];
        for (var i = 0; i < 2; i++)
        {
            var error = OptionRewriter.TryInsert(buffer, length, option, out var grown);
            if (error == WireError.None)
            {
                error = OptionRewriter.TryRemove(buffer, grown, 0, out _);
            }

            if (error != WireError.None)
            {
                return error;
            }
        }

        return WireError.None;
    }

    private static ulong ParseAll(byte[][] packets)
    {
        ulong sum = 0;
        foreach (var packet in packets)
        {
            if (TcpPacket.TryParse(packet, out var parsed) != WireError.None)
            {
                continue;
            }

            sum += parsed.Tcp.SequenceNumber;
            foreach (var option in parsed.Tcp.GetOptionReader())
            {
                if (option.Kind == TcpOptionKind.Mptcp
                    && MptcpOption.TryParse(option.Slice(parsed.Tcp.Options), out var mptcp) == WireError.None)
                {
                    sum += (ulong)mptcp.Length;
                }
            }
        }

        return sum;
    }
}
