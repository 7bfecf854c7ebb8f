namespace ProxySelection.Wire.Tests;

public class TcpHeaderTests
{
    [Test]
    public void TryParse_RealSynAck_ExposesHeaderFields()
    {
        // mpc-basic-v4-002: 18000 -> 40678, seq 1894023342, ack 1955593875, SYN|ACK, doff 13.
        var tcp = TcpPacket.Parse(VectorPackets.Get("mpc-basic-v4-002")).Tcp;
        using (Assert.EnterMultipleScope())
        {
            Assert.That(tcp.SourcePort, Is.EqualTo(18000));
            Assert.That(tcp.DestinationPort, Is.EqualTo(40678));
            Assert.That(tcp.SequenceNumber, Is.EqualTo(1894023342u));
            Assert.That(tcp.AcknowledgmentNumber, Is.EqualTo(1955593875u));
            Assert.That(tcp.Flags, Is.EqualTo(TcpFlags.Syn | TcpFlags.Ack));
            Assert.That(tcp.DataOffset, Is.EqualTo(13));
            Assert.That(tcp.HeaderLength, Is.EqualTo(52));
            Assert.That(tcp.Window, Is.EqualTo(0xfe88));
            Assert.That(tcp.Checksum, Is.EqualTo(0xfb46));
            Assert.That(tcp.UrgentPointer, Is.EqualTo(0));
            Assert.That(tcp.Options.Length, Is.EqualTo(32));
            Assert.That(tcp.Payload.Length, Is.EqualTo(0));
        }
    }

    [Test]
    public void TryParse_ShorterThan20_Truncated() =>
        Assert.That(TcpHeader.TryParse(new byte[19], out _), Is.EqualTo(WireError.Truncated));

    [TestCase(0)]
    [TestCase(4)]
    public void TryParse_DataOffsetBelow5_BadDataOffset(int dataOffset)
    {
        var segment = new byte[20];
        segment[12] = (byte)(dataOffset << 4);
        Assert.That(TcpHeader.TryParse(segment, out _, out var offset), Is.EqualTo(WireError.BadDataOffset));
        Assert.That(offset, Is.EqualTo(12));
    }

    [Test]
    public void TryParse_DataOffsetPastSegment_BadDataOffset()
    {
        var segment = new byte[24];
        segment[12] = 7 << 4;
        Assert.That(TcpHeader.TryParse(segment, out _), Is.EqualTo(WireError.BadDataOffset));
    }

    [Test]
    public void TcpPacketTryParse_BadDataOffset_ErrorOffsetIsInPacket()
    {
        var packet = PacketBuilder.Tcp(false, [], []);
        packet[32] = 0x40;
        Assert.That(TcpPacket.TryParse(packet, out _, out var offset), Is.EqualTo(WireError.BadDataOffset));
        Assert.That(offset, Is.EqualTo(32));
    }

    [Test]
    public void TcpPacketTryParse_TruncatedTcpHeader_Truncated()
    {
        var packet = PacketBuilder.Tcp(false, [], []);
        packet[3] = 30;
        Assert.That(TcpPacket.TryParse(packet, out _), Is.EqualTo(WireError.Truncated));
    }

    [Test]
    public void TcpPacketParse_Malformed_ThrowsWireException()
    {
        var packet = PacketBuilder.Tcp(false, [], []);
        packet[32] = 0x40;
        var ex = Assert.Throws<WireException>(() => TcpPacket.Parse(packet));
        Assert.That(ex!.Error, Is.EqualTo(WireError.BadDataOffset));
    }

    [Test]
    public void Flags_AllBits_Decoded()
    {
        var packet = PacketBuilder.Tcp(false, [], [], flags: TcpFlags.Fin | TcpFlags.Rst | TcpFlags.Psh | TcpFlags.Urg
            | TcpFlags.Ece | TcpFlags.Cwr | TcpFlags.Ae);
        var tcp = TcpPacket.Parse(packet).Tcp;
        Assert.That(tcp.Flags, Is.EqualTo(TcpFlags.Fin | TcpFlags.Rst | TcpFlags.Psh | TcpFlags.Urg | TcpFlags.Ece
            | TcpFlags.Cwr | TcpFlags.Ae));
        Assert.That(tcp.Has(TcpFlags.Syn), Is.False);
    }
}
