using System.Net;
using ProxySelection.Lab.Hostile;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Lab.Tests.Hostile;

[TestFixture]
public sealed class HostileSegmentTests
{
    private static readonly IPAddress SpoofBase = IPAddress.Parse("198.19.0.0");
    private static readonly IPAddress Server = IPAddress.Parse("198.18.3.2");

    [Test]
    public void MpCapableSyn_FromSpoofedPrefix_ParsesWithValidChecksumsAndSourcesInsideThePrefix()
    {
        var segment = HostileSegment.MpCapableSyn(SpoofBase, Server) with { SourcePrefixLength = 16 };
        var random = new Random(7);
        var sources = new HashSet<string>();
        var ports = new HashSet<ushort>();
        for (int i = 0; i < 200; i++)
        {
            var packet = segment.ToArray(random);
            Assert.That(TcpPacket.TryParse(packet, out var parsed), Is.EqualTo(WireError.None));
            Assert.That(InternetChecksum.TryVerify(packet), Is.EqualTo(WireError.None));
            var source = new IPAddress(parsed.Ip.SourceAddress);
            sources.Add(source.ToString());
            ports.Add(parsed.Tcp.SourcePort);
            Assert.That(source.GetAddressBytes()[..2], Is.EqualTo(new byte[] { 198, 19 }), "inside 198.19.0.0/16");
            Assert.That(new IPAddress(parsed.Ip.DestinationAddress), Is.EqualTo(Server));
            Assert.That(parsed.Tcp.DestinationPort, Is.EqualTo(80));
            Assert.That(parsed.Tcp.Flags, Is.EqualTo(TcpFlags.Syn));
            Assert.That(TcpOptionReader.TryFindMptcp(parsed.Tcp.Options, MptcpSubtype.MpCapable, out _), Is.EqualTo(WireError.None), "MP_CAPABLE on the SYN");
        }

        Assert.That(sources, Has.Count.GreaterThan(190), "spoofed sources vary");
        Assert.That(ports, Has.Count.GreaterThan(190), "random source ports");
    }

    [Test]
    public void Ipv6SynAck_WithFixedFields_CarriesThemAndTheGivenAcknowledgment()
    {
        var segment = new HostileSegment
        {
            Source = IPAddress.Parse("2001:db8:3::2"),
            Destination = IPAddress.Parse("2001:db8:3::1"),
            SourcePort = 80,
            DestinationPort = 40000,
            Flags = TcpFlags.Syn | TcpFlags.Ack,
            Sequence = 1234,
            Acknowledgment = 5679,
            Options = HostileOptions.Concat(HostileOptions.Mss(), HostileOptions.MpCapableSynAck(0x1122334455667788)),
        };
        var packet = segment.ToArray(new Random(1));
        Assert.That(TcpPacket.TryParse(packet, out var parsed), Is.EqualTo(WireError.None));
        Assert.That(parsed.Ip.IsIPv6, Is.True);
        Assert.That(InternetChecksum.TryVerify(packet), Is.EqualTo(WireError.None));
        Assert.That(parsed.Tcp.SequenceNumber, Is.EqualTo(1234u));
        Assert.That(parsed.Tcp.AcknowledgmentNumber, Is.EqualTo(5679u));
        Assert.That(parsed.Tcp.Flags, Is.EqualTo(TcpFlags.Syn | TcpFlags.Ack));
        Assert.That(TcpOptionReader.TryFindMptcp(parsed.Tcp.Options, MptcpSubtype.MpCapable, out _), Is.EqualTo(WireError.None));
    }

    [Test]
    public void SameSeed_SendsTheSameSegments()
    {
        var segment = HostileSegment.MpCapableSyn(SpoofBase, Server) with { SourcePrefixLength = 15, DestinationPrefixLength = 20 };
        var first = segment.ToArray(new Random(3));
        var again = segment.ToArray(new Random(3));
        var other = segment.ToArray(new Random(4));
        Assert.That(again, Is.EqualTo(first));
        Assert.That(other, Is.Not.EqualTo(first));
    }

    // What the codec must make of each forged form on an MP_CAPABLE SYN (spec §5.6: anything but Ok is "absent").
    [TestCase(4, 0xA5, 1, null, MpProxyStatus.Ok, TestName = "Length4_PresenceForm_ParsesOk")]
    [TestCase(5, 0xA5, 1, null, MpProxyStatus.BadLength, TestName = "Length5_BadLength")]
    [TestCase(7, 0xA5, 1, null, MpProxyStatus.BadLength, TestName = "Length7_BadLength")]
    [TestCase(8, 0xA5, 1, null, MpProxyStatus.Ok, TestName = "Length8_ShortForm_ParsesOk")]
    [TestCase(16, 0xA5, 1, null, MpProxyStatus.Ok, TestName = "Length16_LongForm_ParsesOk")]
    [TestCase(28, 0xA5, 1, 40, MpProxyStatus.MalformedOptionList, TestName = "Declared40_RunsPastTheHeader_Malformed")]
    [TestCase(16, 0x00, 1, null, MpProxyStatus.NotPresent, TestName = "WrongExperimentId_NotMpProxy")]
    [TestCase(16, 0xA5, 2, null, MpProxyStatus.NotPresent, TestName = "Version2Alone_NotMpProxyVersion1")]
    public void RawMpProxy_OnAnMpCapableSyn_ReadsAsTheSpecSays(int length, int experimentId, int version, int? declared, MpProxyStatus expected)
    {
        var options = HostileOptions.Concat(HostileOptions.MpCapableSyn(),
            HostileOptions.RawMpProxy(length, (byte)experimentId, (byte)version, declaredLength: declared));
        var packet = (HostileSegment.MpCapableSyn(SpoofBase, Server) with { Options = options }).ToArray(new Random(1));
        Assert.That(TcpPacket.TryParse(packet, out var parsed), Is.EqualTo(WireError.None));
        Assert.That(MpProxyCodec.TryFind(parsed.Tcp.Options, out _, out _), Is.EqualTo(expected));
    }

    [Test]
    public void SignedClaim_OnAFixedFlow_VerifiesWithItsKeyAndNotWithAnother()
    {
        var segment = HostileSegment.MpCapableSyn(IPAddress.Parse("198.18.1.2"), Server) with { SourcePort = 41000, Sequence = 99 };
        var ring = new MpProxyKeyRing(1, new byte[32]);
        var other = new MpProxyKeyRing(1, Enumerable.Repeat((byte)1, 32).ToArray());
        var claim = MpProxyOption.Long(MpProxyMessage.Claim, 8, 9);
        ring.Sign(ref claim, segment.SynFlow());
        var withV2 = HostileOptions.Concat(HostileOptions.MpProxy(claim), HostileOptions.RawMpProxy(8, version: 2));
        var packet = (segment with { Options = withV2 }).ToArray(new Random(1));
        Assert.That(TcpPacket.TryParse(packet, out var parsed), Is.EqualTo(WireError.None));
        Assert.That(MpProxyCodec.TryFind(parsed.Tcp.Options, out var found, out _), Is.EqualTo(MpProxyStatus.Ok), "a v2 beside v1 does not cancel it");
        Assert.Multiple(() =>
        {
            Assert.That(ring.Verify(found, segment.SynFlow()), Is.True);
            Assert.That(other.Verify(found, segment.SynFlow()), Is.False);
        });
    }

    [Test]
    public void Md5Signature_IsKind19OfLength18()
    {
        var md5 = HostileOptions.Md5Signature();
        Assert.That(md5[..2], Is.EqualTo(new byte[] { 19, 18 }));
        Assert.That(md5, Has.Length.EqualTo(18));
    }
}
