using System.Buffers.Binary;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Unit;

[TestFixture]
public sealed class PcapFileTests
{
    [TestCase(false, false)]
    [TestCase(true, false)]
    [TestCase(false, true)]
    [TestCase(true, true)]
    public void Parse_BothByteOrdersAndStampResolutions_ReadsRecords(bool bigEndian, bool nanoseconds)
    {
        byte[] frame = [.. new byte[12], 0x08, 0x00, 0x45, 0, 0, 20];
        var file = Build(bigEndian, nanoseconds, linkType: 1, (5, nanoseconds ? 7000u : 7u, frame), (6, 0, frame[..14]));

        var packets = PcapFile.Parse(file);

        Assert.That(packets, Has.Count.EqualTo(2));
        Assert.That(packets[0].TimestampMicroseconds, Is.EqualTo(5_000_007));
        Assert.That(packets[0].LinkType, Is.EqualTo(PcapPacket.LinkTypeEthernet));
        Assert.That(packets[0].IpPacket.ToArray(), Is.EqualTo(frame[14..]));
        Assert.That(packets[1].IpPacket.IsEmpty, Is.True, "a frame with no IP after the Ethernet header");
    }

    [Test]
    public void Parse_LastRecordCutShort_EndsTheList()
    {
        var file = Build(false, false, 1, (1, 0, new byte[20]));

        Assert.That(PcapFile.Parse(file.AsSpan(0, file.Length - 5)), Is.Empty);
    }

    [Test]
    public void Parse_NotPcap_ThrowsLabException()
    {
        Assert.That(() => PcapFile.Parse(new byte[24]), Throws.InstanceOf<LabException>());
        Assert.That(() => PcapFile.Parse(new byte[3]), Throws.InstanceOf<LabException>());
    }

    [Test]
    public void IpPacket_LinuxCookedV2_SkipsTwentyByteHeader()
    {
        byte[] frame = [0x86, 0xDD, .. new byte[18], 0x60, 1, 2, 3];

        var packet = new PcapPacket(0, PcapPacket.LinkTypeLinuxSll2, frame);

        Assert.That(packet.IpPacket.ToArray(), Is.EqualTo(new byte[] { 0x60, 1, 2, 3 }));
    }

    private static byte[] Build(bool bigEndian, bool nanoseconds, uint linkType, params (uint Seconds, uint Fraction, byte[] Data)[] records)
    {
        var bytes = new List<byte>();
        void U32(uint v)
        {
            var b = new byte[4];
            if (bigEndian)
            {
                BinaryPrimitives.WriteUInt32BigEndian(b, v);
            }
            else
            {
                BinaryPrimitives.WriteUInt32LittleEndian(b, v);
            }

            bytes.AddRange(b);
        }

        U32(nanoseconds ? 0xa1b23c4d : 0xa1b2c3d4);
        U32(0x0004_0002); // version 2.4 (read as two u16; not checked by the reader)
        U32(0);
        U32(0);
        U32(65535);
        U32(linkType);
        foreach (var (s, f, d) in records)
        {
            U32(s);
            U32(f);
            U32((uint)d.Length);
            U32((uint)d.Length);
            bytes.AddRange(d);
        }

        return [.. bytes];
    }
}
