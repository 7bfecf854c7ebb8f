using ProxySelection.Lab;
using ProxySelection.Wire.Pcap;

namespace ProxySelection.Lab.Tests;

/// <summary>The Lab's list-of-packets forwards over Wire's pcap reader (whose parsing is tested in Host.Tests/Pcap).</summary>
[TestFixture]
public sealed class PcapFileTests
{
    private static readonly byte[] Ipv4Header = [0x45, 0, 0, 20, .. new byte[16]];

    [TestCase(false)]
    [TestCase(true)]
    public void Parse_RecordsWrittenByPcapWriter_MicrosecondStampsAndIpPacketWithoutLinkHeader(bool nanoseconds)
    {
        var file = Write(PcapLinkType.Ethernet, nanoseconds, w =>
        {
            w.WriteIpPacket(Ipv4Header, seconds: 5, nanoseconds: 7_000);
            w.WriteFrame(new byte[14], seconds: 6, nanoseconds: 0);
        });

        var packets = PcapFile.Parse(file);

        Assert.That(packets, Has.Count.EqualTo(2));
        Assert.That(packets[0].TimestampMicroseconds, Is.EqualTo(5_000_007));
        Assert.That(packets[0].LinkType, Is.EqualTo(PcapPacket.LinkTypeEthernet));
        Assert.That(packets[0].IpPacket.ToArray(), Is.EqualTo(Ipv4Header));
        Assert.That(packets[1].IpPacket.IsEmpty, Is.True, "a frame with no IP after the Ethernet header");
    }

    [Test]
    public void Parse_LastRecordCutShort_EndsTheList()
    {
        var file = Write(PcapLinkType.Raw, false, w => w.WriteIpPacket(Ipv4Header));

        Assert.That(PcapFile.Parse(file.AsSpan(0, file.Length - 5)), Is.Empty);
    }

    [Test]
    public void Parse_NotPcap_ThrowsLabException()
    {
        Assert.That(() => PcapFile.Parse(new byte[24]), Throws.InstanceOf<LabException>());
        Assert.That(() => PcapFile.Parse(new byte[3]), Throws.InstanceOf<LabException>());
    }

    [Test]
    public void IpPacket_LinuxCookedV2_IsTheSliceAfterTheTwentyByteHeader()
    {
        byte[] ip = [0x60, 0, 0, 0, 0, 0, 6, 64, .. new byte[32]];
        byte[] frame = [0x86, 0xDD, .. new byte[18], .. ip];

        var packet = new PcapPacket(0, PcapPacket.LinkTypeLinuxSll2, frame);

        Assert.That(packet.IpPacket.ToArray(), Is.EqualTo(ip));
    }

    private static byte[] Write(PcapLinkType linkType, bool nanoseconds, Action<PcapWriter> records)
    {
        using var stream = new MemoryStream();
        using (var writer = new PcapWriter(stream, linkType, nanoseconds))
        {
            records(writer);
        }

        return stream.ToArray();
    }
}
