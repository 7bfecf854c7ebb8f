using System.Buffers.Binary;

namespace ProxySelection.Wire.Tests;

public class IpPacketTests
{
    [Test]
    public void TryParse_RealIpv4Syn_ExposesHeaderFields()
    {
        var packet = VectorPackets.Get("mpc-basic-v4-001");
        Assert.That(IpPacket.TryParse(packet, out var ip), Is.EqualTo(WireError.None));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(ip.Version, Is.EqualTo(4));
            Assert.That(ip.HeaderLength, Is.EqualTo(20));
            Assert.That(ip.Ihl, Is.EqualTo(5));
            Assert.That(ip.TotalLength, Is.EqualTo(64));
            Assert.That(ip.Identification, Is.EqualTo(0x7ba8));
            Assert.That(ip.DontFragment, Is.True);
            Assert.That(ip.HopLimit, Is.EqualTo(64));
            Assert.That(ip.Protocol, Is.EqualTo(6));
            Assert.That(ip.HeaderChecksum, Is.EqualTo(0x32e8));
            Assert.That(ip.SourceAddress.ToArray(), Is.EqualTo(new byte[] { 198, 18, 0, 1 }));
            Assert.That(ip.DestinationAddress.ToArray(), Is.EqualTo(new byte[] { 198, 18, 0, 2 }));
            Assert.That(ip.Payload.Length, Is.EqualTo(44));
        }
    }

    [Test]
    public void TryParse_RealIpv6Packet_ExposesHeaderFields()
    {
        var packet = VectorPackets.Packets.First(p => p.Packet[0] >> 4 == 6).Packet;
        Assert.That(IpPacket.TryParse(packet, out var ip), Is.EqualTo(WireError.None));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(ip.IsIPv6, Is.True);
            Assert.That(ip.HeaderLength, Is.EqualTo(40));
            Assert.That(ip.PayloadLength, Is.EqualTo(packet.Length - 40));
            Assert.That(ip.SourceAddress.Length, Is.EqualTo(16));
            Assert.That(ip.SourceAddress[..4].ToArray(), Is.EqualTo(new byte[] { 0x20, 0x01, 0x0d, 0xb8 }));
        }
    }

    [Test]
    public void TryParse_TrailingLinkPadding_CutToIpLength()
    {
        var packet = PacketBuilder.Tcp(false, [], [], spare: 6);
        Assert.That(IpPacket.TryParse(packet, out var ip), Is.EqualTo(WireError.None));
        Assert.That(ip.PacketLength, Is.EqualTo(40));
    }

    [Test]
    public void TryParse_Empty_Truncated() =>
        Assert.That(IpPacket.TryParse([], out _), Is.EqualTo(WireError.Truncated));

    [TestCase(0x00)]
    [TestCase(0x50)]
    [TestCase(0xF0)]
    public void TryParse_WrongVersion_BadIpVersion(byte first)
    {
        var packet = PacketBuilder.Tcp(false, [], []);
        packet[0] = first;
        Assert.That(IpPacket.TryParse(packet, out _), Is.EqualTo(WireError.BadIpVersion));
    }

    [TestCase(0)]
    [TestCase(4)]
    public void TryParse_IhlBelow5_BadIhl(int ihl)
    {
        var packet = PacketBuilder.Tcp(false, [], []);
        packet[0] = (byte)(0x40 | ihl);
        Assert.That(IpPacket.TryParse(packet, out _), Is.EqualTo(WireError.BadIhl));
    }

    [TestCase(0)]
    [TestCase(19)]
    public void TryParse_Ipv4ShorterThanHeader_Truncated(int length)
    {
        var packet = PacketBuilder.Tcp(false, [], []);
        Assert.That(IpPacket.TryParse(packet.AsSpan(0, Math.Max(length, 1)), out _), Is.EqualTo(WireError.Truncated));
    }

    [Test]
    public void TryParse_IhlPastBuffer_Truncated()
    {
        var packet = PacketBuilder.Tcp(false, [], []);
        packet[0] = 0x4F;
        Assert.That(IpPacket.TryParse(packet.AsSpan(0, 40), out _), Is.EqualTo(WireError.Truncated));
    }

    [Test]
    public void TryParse_TotalLengthBelowHeader_BadTotalLength()
    {
        var packet = PacketBuilder.Tcp(false, [], []);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), 19);
        Assert.That(IpPacket.TryParse(packet, out _, out var offset), Is.EqualTo(WireError.BadTotalLength));
        Assert.That(offset, Is.EqualTo(2));
    }

    [Test]
    public void TryParse_TotalLengthPastBuffer_Truncated()
    {
        var packet = PacketBuilder.Tcp(false, [], []);
        Assert.That(IpPacket.TryParse(packet.AsSpan(0, 39), out _), Is.EqualTo(WireError.Truncated));
    }

    [Test]
    public void TryParse_Udp_NotTcp()
    {
        var packet = PacketBuilder.Tcp(false, [], []);
        packet[9] = 17;
        Assert.That(IpPacket.TryParse(packet, out _), Is.EqualTo(WireError.NotTcp));
        Assert.That(IpPacket.TryParseAny(packet, out var ip, out _), Is.EqualTo(WireError.None));
        Assert.That(ip.Protocol, Is.EqualTo(17));
    }

    [TestCase(0x20, 0x00)]
    [TestCase(0x00, 0x01)]
    public void TryParse_Ipv4Fragment_Fragmented(byte flagsByte, byte offsetLow)
    {
        var packet = PacketBuilder.Tcp(false, [], []);
        packet[6] = flagsByte;
        packet[7] = offsetLow;
        Assert.That(IpPacket.TryParse(packet, out _), Is.EqualTo(WireError.Fragmented));
    }

    [Test]
    public void TryParse_Ipv6TruncatedHeader_Truncated()
    {
        var packet = PacketBuilder.Tcp(true, [], []);
        Assert.That(IpPacket.TryParse(packet.AsSpan(0, 39), out _), Is.EqualTo(WireError.Truncated));
    }

    [Test]
    public void TryParse_Ipv6PayloadLengthPastBuffer_Truncated()
    {
        var packet = PacketBuilder.Tcp(true, [], []);
        Assert.That(IpPacket.TryParse(packet.AsSpan(0, packet.Length - 1), out _), Is.EqualTo(WireError.Truncated));
    }

    [Test]
    public void TryParse_Ipv6EveryExtensionHeader_WalksToTcp()
    {
        // hop-by-hop(0) -> routing(43) -> fragment(44, offset 0, M 0) -> AH(51, 12 bytes) -> dest-opts(60) -> TCP
        byte[] ext =
        [
            43, 0, 1, 4, 0, 0, 0, 0,
            44, 0, 0, 0, 0, 0, 0, 0,
            51, 0, 0, 0, 0, 0, 0, 1,
            60, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0,
            6, 0, 1, 4, 0, 0, 0, 0,
        ];
        var packet = PacketBuilder.Tcp(true, [], [1, 2, 3], extensionHeaders: ext, firstNextHeader: 0);
        Assert.That(IpPacket.TryParse(packet, out var ip), Is.EqualTo(WireError.None));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(ip.ExtensionHeaderCount, Is.EqualTo(5));
            Assert.That(ip.HeaderLength, Is.EqualTo(40 + ext.Length));
            Assert.That(TcpHeader.Parse(ip.Payload).Payload.ToArray(), Is.EqualTo(new byte[] { 1, 2, 3 }));
            Assert.That(InternetChecksum.VerifyTcp(ip), Is.True);
        }
    }

    [Test]
    public void TryParse_Ipv6ExtensionChainTooLong_ExtensionHeaderLoop()
    {
        var ext = new byte[8 * 9];
        for (var i = 0; i < 9; i++)
        {
            ext[i * 8] = 60;
        }

        var packet = PacketBuilder.Tcp(true, [], [], extensionHeaders: ext, firstNextHeader: 60, fillChecksums: false);
        Assert.That(IpPacket.TryParse(packet, out _), Is.EqualTo(WireError.ExtensionHeaderLoop));
    }

    [Test]
    public void TryParse_Ipv6ExtensionHeaderPastPacket_Truncated()
    {
        byte[] ext = [6, 200, 0, 0, 0, 0, 0, 0];
        var packet = PacketBuilder.Tcp(true, [], [], extensionHeaders: ext, firstNextHeader: 60, fillChecksums: false);
        Assert.That(IpPacket.TryParse(packet, out _), Is.EqualTo(WireError.Truncated));
    }

    [Test]
    public void TryParse_Ipv6NonFirstFragment_Fragmented()
    {
        byte[] ext = [6, 0, 0, 8, 0, 0, 0, 1];
        var packet = PacketBuilder.Tcp(true, [], [], extensionHeaders: ext, firstNextHeader: 44, fillChecksums: false);
        Assert.That(IpPacket.TryParse(packet, out _), Is.EqualTo(WireError.Fragmented));
    }

    [Test]
    public void TryParse_Ipv6NoNextHeader_NotTcp()
    {
        var packet = PacketBuilder.Tcp(true, [], []);
        packet[6] = 59;
        Assert.That(IpPacket.TryParse(packet, out _), Is.EqualTo(WireError.NotTcp));
    }

    [Test]
    public void Parse_Malformed_ThrowsWireExceptionWithError()
    {
        var ex = Assert.Throws<WireException>(() => IpPacket.Parse([0x45, 0, 0]));
        Assert.That(ex!.Error, Is.EqualTo(WireError.Truncated));
    }
}
