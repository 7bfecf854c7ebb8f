using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using ProxySelection.Wire.Pcap;

namespace ProxySelection.Host.Tests.Pcap;

public class PcapReaderTests
{
    private static readonly byte[] Ipv4Packet = Convert.FromHexString(
        "450000407ba84000400632e8c6120001c61200029ee64650748ffe9200000000b002faf0df2f0000020405b40402080afbba5e97000000000103030a1e040101");

    private static readonly byte[] Ipv6Packet = Convert.FromHexString(
        "6000000000140640200108b8000000000000000000000001200108b8000000000000000000000002" +
        "9ee6465000000001000000005002faf000000000");

    public static IEnumerable<TestCaseData> Formats()
    {
        foreach (var link in Enum.GetValues<PcapLinkType>())
        {
            foreach (var bigEndian in new[] { false, true })
            {
                foreach (var nano in new[] { false, true })
                {
                    yield return new TestCaseData(link, bigEndian, nano).SetName($"WriteThenRead_{link}_{(bigEndian ? "BE" : "LE")}_{(nano ? "ns" : "us")}_GivesPacketsBack");
                }
            }
        }
    }

    [TestCaseSource(nameof(Formats))]
    public void WriteThenRead_EveryLinkTypeByteOrderAndPrecision_GivesPacketsBack(PcapLinkType link, bool bigEndian, bool nano)
    {
        var packets = link switch
        {
            PcapLinkType.RawIPv4 => new[] { Ipv4Packet, Ipv4Packet },
            PcapLinkType.RawIPv6 => new[] { Ipv6Packet, Ipv6Packet },
            _ => new[] { Ipv4Packet, Ipv6Packet },
        };
        var file = Write(link, bigEndian, nano, packets, seconds: 1_700_000_000, nanoseconds: 123_456_789);

        Assert.That(PcapReader.TryCreate(file, out var reader), Is.EqualTo(PcapStatus.Ok));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(reader.LinkType, Is.EqualTo(link));
            Assert.That(reader.BigEndian, Is.EqualTo(bigEndian));
            Assert.That(reader.Nanosecond, Is.EqualTo(nano));
        }
        for (int i = 0; i < packets.Length; i++)
        {
            Assert.That(reader.ReadNext(out var record), Is.EqualTo(PcapStatus.Ok));
            Assert.That(record.TryGetIpPacket(out var ip), Is.EqualTo(PcapStatus.Ok));
            using (Assert.EnterMultipleScope())
            {
                Assert.That(record.Number, Is.EqualTo(i + 1));
                Assert.That(record.Seconds, Is.EqualTo(1_700_000_000u));
                Assert.That(record.Nanoseconds, Is.EqualTo(nano ? 123_456_789u : 123_456_000u));
                Assert.That(record.IsCut, Is.False);
                Assert.That(ip.ToArray(), Is.EqualTo(packets[i]));
            }
        }

        Assert.That(reader.ReadNext(out _), Is.EqualTo(PcapStatus.End));
    }

    [Test]
    public void ReadVectorPcaps_EveryRecordIsIp_AndKeptFramesMatchTheJsonlHex()
    {
        int checkedFrames = 0;
        foreach (var group in VectorFiles.Records().GroupBy(r => r.PcapPath))
        {
            var file = File.ReadAllBytes(group.Key);
            var byFrame = group.ToDictionary(r => r.Frame, r => r.Packet);
            Assert.That(PcapReader.TryCreate(file, out var reader), Is.EqualTo(PcapStatus.Ok), group.Key);
            Assert.That(reader.LinkType, Is.EqualTo(PcapLinkType.Ethernet));
            PcapStatus status;
            while ((status = reader.ReadNext(out var record)) == PcapStatus.Ok)
            {
                Assert.That(record.TryGetIpPacket(out var ip), Is.EqualTo(PcapStatus.Ok));
                if (byFrame.TryGetValue(record.Number, out var expected))
                {
                    Assert.That(ip.ToArray(), Is.EqualTo(expected), $"{group.Key} frame {record.Number}");
                    checkedFrames++;
                }
            }

            Assert.That(status, Is.EqualTo(PcapStatus.End), group.Key);
        }

        Assert.That(checkedFrames, Is.EqualTo(VectorFiles.Records().Count()));
    }

    [TestCase("8100", TestName = "EthernetVlan_OneTag_Skipped")]
    [TestCase("88a8", TestName = "EthernetVlan_QinQOuterTag_Skipped")]
    public void EthernetVlan_Tags_AreSkipped(string outerTag)
    {
        // dst, src MACs, outer tag + TCI, inner 802.1Q tag + TCI, IPv4.
        var frame = Convert.FromHexString("000000000001000000000002" + outerTag + "0064" + "81000065" + "0800")
            .Concat(Ipv4Packet).ToArray();
        Assert.That(LinkLayer.TryGetIpPacket(PcapLinkType.Ethernet, frame, out var ip), Is.EqualTo(PcapStatus.Ok));
        Assert.That(ip.ToArray(), Is.EqualTo(Ipv4Packet));
    }

    [Test]
    public void Ethernet_PaddedShortFrame_PaddingIsTrimmedByIpTotalLength()
    {
        var small = Ipv4Packet.AsSpan(0, 40).ToArray();
        BinaryPrimitives.WriteUInt16BigEndian(small.AsSpan(2), 40);
        var frame = Convert.FromHexString("0000000000010000000000020800").Concat(small).Concat(new byte[6]).ToArray();
        Assert.That(LinkLayer.TryGetIpPacket(PcapLinkType.Ethernet, frame, out var ip), Is.EqualTo(PcapStatus.Ok));
        Assert.That(ip.Length, Is.EqualTo(40));
    }

    [TestCase(PcapLinkType.Ethernet, "0000000000010000000000020806", PcapStatus.NotIp, TestName = "Ethernet_Arp_IsNotIp")]
    [TestCase(PcapLinkType.Ethernet, "00000000000100000000000208", PcapStatus.TruncatedLinkHeader, TestName = "Ethernet_13Bytes_IsTruncated")]
    [TestCase(PcapLinkType.Ethernet, "0000000000010000000000028100", PcapStatus.TruncatedLinkHeader, TestName = "Ethernet_VlanTagCut_IsTruncated")]
    [TestCase(PcapLinkType.LinuxCooked, "000400010006000000000000000008", PcapStatus.TruncatedLinkHeader, TestName = "LinuxCooked_15Bytes_IsTruncated")]
    [TestCase(PcapLinkType.LinuxCooked, "00040001000600000000000000000806", PcapStatus.NotIp, TestName = "LinuxCooked_Arp_IsNotIp")]
    [TestCase(PcapLinkType.LinuxCookedV2, "08060000000000010004060000000000000000", PcapStatus.TruncatedLinkHeader, TestName = "LinuxCookedV2_19Bytes_IsTruncated")]
    [TestCase(PcapLinkType.LinuxCookedV2, "0806000000000001000406000000000000000000", PcapStatus.NotIp, TestName = "LinuxCookedV2_Arp_IsNotIp")]
    [TestCase(PcapLinkType.Raw, "", PcapStatus.TruncatedLinkHeader, TestName = "Raw_Empty_IsTruncated")]
    [TestCase(PcapLinkType.Raw, "5500", PcapStatus.NotIp, TestName = "Raw_Version5_IsNotIp")]
    public void LinkLayer_BadFrames_GiveStatus(PcapLinkType link, string frameHex, PcapStatus expected)
    {
        Assert.That(LinkLayer.TryGetIpPacket(link, Convert.FromHexString(frameHex), out _), Is.EqualTo(expected));
    }

    [TestCase("", PcapStatus.TruncatedFileHeader, TestName = "TryCreate_EmptyFile_TruncatedFileHeader")]
    [TestCase("d4c3b2a1020004000000000000000000ffff0000", PcapStatus.TruncatedFileHeader, TestName = "TryCreate_20ByteHeader_TruncatedFileHeader")]
    [TestCase("0a0d0d0a1c0000004d3c2b1a01000000ffffffffffffffff", PcapStatus.PcapNgNotSupported, TestName = "TryCreate_PcapNg_NotSupported")]
    [TestCase("7f454c46020101000000000000000000ffff000001000000", PcapStatus.BadMagic, TestName = "TryCreate_ElfFile_BadMagic")]
    [TestCase("d4c3b2a1030000000000000000000000ffff000001000000", PcapStatus.UnsupportedVersion, TestName = "TryCreate_Version3_UnsupportedVersion")]
    [TestCase("d4c3b2a1020004000000000000000000ffff00006a000000", PcapStatus.UnsupportedLinkType, TestName = "TryCreate_LinkType106_UnsupportedLinkType")]
    public void TryCreate_BadHeaders_GiveStatus(string hex, PcapStatus expected)
    {
        Assert.That(PcapReader.TryCreate(Convert.FromHexString(hex), out _), Is.EqualTo(expected));
    }

    [Test]
    public void ReadNext_FileCutInsideRecordHeader_TruncatedRecordHeader()
    {
        var file = Write(PcapLinkType.Raw, false, false, [Ipv4Packet]);
        Assert.That(ReadAll(file.AsSpan(0, PcapReader.FileHeaderLength + 10)), Is.EqualTo(PcapStatus.TruncatedRecordHeader));
    }

    [Test]
    public void ReadNext_FileCutInsideRecordData_TruncatedRecordData()
    {
        var file = Write(PcapLinkType.Raw, false, false, [Ipv4Packet]);
        Assert.That(ReadAll(file.AsSpan(0, file.Length - 1)), Is.EqualTo(PcapStatus.TruncatedRecordData));
    }

    [Test]
    public void ReadNext_CapturedLengthAboveLimit_BadRecordLength()
    {
        var file = Write(PcapLinkType.Raw, false, false, [Ipv4Packet]);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(PcapReader.FileHeaderLength + 8), 0x7FFF_FFFF);
        Assert.That(ReadAll(file), Is.EqualTo(PcapStatus.BadRecordLength));
    }

    [Test]
    public void ReadNext_SnapLengthCutRecord_IsCutAndStillYieldsTheCapturedBytes()
    {
        var file = Write(PcapLinkType.Raw, false, false, [Ipv4Packet]);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(PcapReader.FileHeaderLength + 12), 1500);
        Assert.That(PcapReader.TryCreate(file, out var reader), Is.EqualTo(PcapStatus.Ok));
        Assert.That(reader.ReadNext(out var record), Is.EqualTo(PcapStatus.Ok));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(record.IsCut, Is.True);
            Assert.That(record.OriginalLength, Is.EqualTo(1500u));
            Assert.That(record.Frame.Length, Is.EqualTo(Ipv4Packet.Length));
        }
    }

    [Test]
    public void Reader_AnyCutOrCorruptedFile_ReturnsAStatusAndNeverThrows()
    {
        var valid = Write(PcapLinkType.Ethernet, false, true, [Ipv4Packet, Ipv6Packet, Ipv4Packet]);
        var gen = from cut in Gen.Choose(0, valid.Length)
                  from flips in Gen.ArrayOf(Gen.Choose(0, valid.Length * 8 - 1))
                  select (cut, flips);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var bytes = (byte[])valid.Clone();
            foreach (var bit in t.flips)
            {
                bytes[bit / 8] ^= (byte)(1 << (bit % 8));
            }

            var status = ReadAll(bytes.AsSpan(0, t.cut));
            return status != PcapStatus.Ok && Enum.IsDefined(status);
        }).QuickCheckThrowOnFailure();
    }

    [Test]
    public void ReadNext_CorruptSnapLengthAndRecordLengthAboveIntMax_ReturnsBadRecordLength()
    {
        // Found by the property above: a snap length over int.MaxValue let a captured length of 2^31 + 1 through,
        // which became a negative slice length.
        var bytes = Write(PcapLinkType.Ethernet, false, true, [Ipv4Packet]);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(16), 0xFFFF_FFFF);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(24 + 8), 0x8000_0001);

        Assert.That(ReadAll(bytes), Is.EqualTo(PcapStatus.BadRecordLength));
    }

    private static PcapStatus ReadAll(ReadOnlySpan<byte> file)
    {
        var status = PcapReader.TryCreate(file, out var reader);
        if (status != PcapStatus.Ok)
        {
            return status;
        }

        while ((status = reader.ReadNext(out var record)) == PcapStatus.Ok)
        {
            _ = record.TryGetIpPacket(out _);
        }

        return status;
    }

    internal static byte[] Write(PcapLinkType link, bool bigEndian, bool nano, byte[][] packets, uint seconds = 0, uint nanoseconds = 0)
    {
        using var stream = new MemoryStream();
        using (var writer = new PcapWriter(stream, link, nano, bigEndian))
        {
            foreach (var packet in packets)
            {
                writer.WriteIpPacket(packet, seconds, nanoseconds);
            }
        }

        return stream.ToArray();
    }
}
