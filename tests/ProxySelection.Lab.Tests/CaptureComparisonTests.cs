using ProxySelection.Lab;
using ProxySelection.Wire;

namespace ProxySelection.Lab.Tests;

/// <summary>
/// The rule that tells a router's legitimate drops and tcpdump's losses from a rewrite (untouched pass-through, design §2):
/// a change is a substitution, bytes under one segment key that each side lacks.
/// </summary>
[TestFixture]
public sealed class CaptureComparisonTests
{
    private const string Client = "198.18.1.2";
    private const string Server = "198.18.9.2";

    [Test]
    public void Compare_SameSegmentsBothSides_IdenticalWithNothingMissing()
    {
        var a = Data(seq: 1000, timestamp: 1);
        var b = Data(seq: 2000, timestamp: 2);

        var result = CaptureComparison.Compare([a, b], [a, b], _ => true);

        Assert.That(result, Is.EqualTo(new SideComparison(0, 0, 2, 2, "")));
    }

    [Test]
    public void Compare_PayloadRewrittenOnTheWay_Changed()
    {
        var sent = Data(seq: 1000, timestamp: 1, fill: 0x11);
        var rewritten = Data(seq: 1000, timestamp: 1, fill: 0x22);

        var result = CaptureComparison.Compare([sent], [rewritten], _ => true);

        Assert.Multiple(() =>
        {
            Assert.That(result.Changed, Is.EqualTo(2), "the bytes each side lacks, counted on both sides");
            Assert.That(result.Identical(tolerance: 100), Is.False, "no tolerance hides a change");
        });
    }

    [Test]
    public void Compare_DroppedInsideTheHopThenRetransmitted_LossNotChange()
    {
        // The original reached the hop's first side and was dropped; the retransmission (same sequence, a later
        // timestamp) crossed both sides.
        var original = Data(seq: 1000, timestamp: 1);
        var retransmission = Data(seq: 1000, timestamp: 9);

        var result = CaptureComparison.Compare([original, retransmission], [retransmission], _ => true);

        Assert.Multiple(() =>
        {
            Assert.That(result.Changed, Is.Zero);
            Assert.That((result.Missing, result.Superseded), Is.EqualTo((0, 1)), "its key crossed: a drop, not a capture loss");
            Assert.That(result.Identical(tolerance: 0), Is.True);
        });
    }

    [Test]
    public void Compare_RetransmissionLostByTcpdumpAfterTheHop_LossNotChange()
    {
        var original = Data(seq: 1000, timestamp: 1);
        var retransmission = Data(seq: 1000, timestamp: 9);

        var result = CaptureComparison.Compare([original, retransmission], [original], _ => true);

        Assert.That((result.Changed, result.Missing, result.Superseded), Is.EqualTo((0, 0, 1)));
    }

    [Test]
    public void Compare_OriginalOnOneSideRetransmissionOnlyOnTheOther_NotAChange()
    {
        // The same payload at the same sequence, only the timestamp differing: the original was dropped inside the hop
        // and tcpdump lost the retransmission on the first side. Three CI runs failed on such pairs in a pass-through hop.
        var result = CaptureComparison.Compare([Data(seq: 1000, timestamp: 1)], [Data(seq: 1000, timestamp: 9)], _ => true);

        Assert.That(result.Changed, Is.Zero);
    }

    [Test]
    public void Compare_RetransmissionWithOtherPayload_Changed()
    {
        // A "retransmission" whose bytes differ is a rewrite, whatever its timestamp says.
        var result = CaptureComparison.Compare([Data(seq: 1000, timestamp: 1, fill: 0x11)], [Data(seq: 1000, timestamp: 9, fill: 0x22)], _ => true);

        Assert.That(result.Changed, Is.EqualTo(2));
    }

    [Test]
    public void Compare_PureAckPairEachLostOnOneSide_LossNotChange()
    {
        var ack = Segment(Server, Client, seq: 1, ack: 5000, TcpFlags.Ack, timestamp: 1, payload: 0, fill: 0);
        var windowUpdate = Segment(Server, Client, seq: 1, ack: 5000, TcpFlags.Ack, timestamp: 2, payload: 0, fill: 0, window: 4096);

        var result = CaptureComparison.Compare([ack], [windowUpdate], _ => true);

        Assert.That((result.Changed, result.Missing, result.Superseded), Is.EqualTo((0, 0, 2)));
    }

    [Test]
    public void Compare_SegmentOnOneSideOnly_Missing()
    {
        var a = Data(seq: 1000, timestamp: 1);
        var b = Data(seq: 2000, timestamp: 2);

        var result = CaptureComparison.Compare([a, b], [a], _ => true);

        Assert.Multiple(() =>
        {
            Assert.That((result.Changed, result.Missing), Is.EqualTo((0, 1)));
            Assert.That(result.Detail, Does.StartWith("after: missing #1"));
            Assert.That(result.Identical(tolerance: 0), Is.False);
        });
    }

    [Test]
    public void Compare_SelectsOnlyTheSegmentsMineAccepts()
    {
        var mine = Data(seq: 1000, timestamp: 1);
        var other = Segment(Server, Client, seq: 7, ack: 1, TcpFlags.Ack | TcpFlags.Psh, timestamp: 1, payload: 10, fill: 3);

        var result = CaptureComparison.Compare([mine, other], [mine], s => s.Source == Client);

        Assert.That((result.Before, result.After, result.Missing), Is.EqualTo((1, 1, 0)));
    }

    [Test]
    public void Compare_SegmentsCoalescedOnOneSide_NotAChange()
    {
        // Three segments of one burst (one timestamp) before the hop; after it, the first two as one coalesced segment
        // (its checksum unfinished, as a capture shows it under offload) and the third alone.
        var first = Data(seq: 1000, timestamp: 5, payload: 100);
        var second = Data(seq: 1100, timestamp: 5, payload: 100);
        var third = Data(seq: 1200, timestamp: 5, payload: 100);
        var coalesced = Data(seq: 1000, timestamp: 5, payload: 200);
        coalesced.Bytes[16] = 0xAB;

        var result = CaptureComparison.Compare([first, second, third], [coalesced, third], _ => true);

        Assert.Multiple(() =>
        {
            Assert.That(result.Changed, Is.Zero, "a coalesced segment that begins with the original is no rewrite");
            Assert.That(CaptureComparison.Resegmented(first, coalesced), Is.True);
        });
    }

    [Test]
    public void Compare_CoalescedSegmentWithOtherBytes_Changed()
    {
        var original = Data(seq: 1000, timestamp: 5, payload: 100, fill: 0x11);
        var rewritten = Data(seq: 1000, timestamp: 5, payload: 200, fill: 0x22);

        var result = CaptureComparison.Compare([original], [rewritten], _ => true);

        Assert.That(result.Changed, Is.EqualTo(2), "longer, and not beginning with the original's bytes");
    }

    [Test]
    public void Compare_OnlyTheTcpChecksumDiffers_Identical()
    {
        var sent = Data(seq: 1000, timestamp: 1);
        var offloaded = Data(seq: 1000, timestamp: 1);
        offloaded.Bytes[16] = 0x12;
        offloaded.Bytes[17] = 0x34;

        var result = CaptureComparison.Compare([sent], [offloaded], _ => true);

        Assert.That((result.Changed, result.Missing), Is.EqualTo((0, 0)), "a capture shows the checksum unfinished under offload");
    }

    private static CapturedSegment Data(uint seq, uint timestamp, byte fill = 0x5a, int payload = 100) =>
        Segment(Client, Server, seq, ack: 1, TcpFlags.Ack | TcpFlags.Psh, timestamp, payload, fill);

    /// <summary>A TCP header with a timestamp option (32 bytes) and <paramref name="payload"/> bytes of <paramref name="fill"/>.</summary>
    private static CapturedSegment Segment(string source, string destination, uint seq, uint ack, TcpFlags flags, uint timestamp, int payload, byte fill, ushort window = 502)
    {
        var bytes = new byte[32 + payload];
        bytes[0] = 0xc3; // source port 50000
        bytes[1] = 0x50;
        bytes[3] = 80;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4), seq);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(8), ack);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(12), (ushort)((8 << 12) | (ushort)flags));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(14), window);
        bytes[20] = 1; // NOP, NOP, timestamp
        bytes[21] = 1;
        bytes[22] = 8;
        bytes[23] = 10;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(24), timestamp);
        bytes.AsSpan(32).Fill(fill);
        return new CapturedSegment(source, destination, flags, timestamp, bytes);
    }
}
