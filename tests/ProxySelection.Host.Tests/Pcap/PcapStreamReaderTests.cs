using FsCheck;
using FsCheck.Fluent;
using ProxySelection.Wire.Pcap;

namespace ProxySelection.Host.Tests.Pcap;

/// <summary>The stream reader sees exactly what the span reader sees: same records, same statuses, on good and bad files.</summary>
public class PcapStreamReaderTests
{
    private static readonly byte[] Ipv4Packet = Convert.FromHexString(
        "450000407ba84000400632e8c6120001c61200029ee64650748ffe9200000000b002faf0df2f0000020405b40402080afbba5e97000000000103030a1e040101");

    [Test]
    public void StreamReader_VectorCaptures_SameRecordsAsSpanReader()
    {
        int files = 0;
        foreach (var path in Directory.GetFiles(VectorFiles.RequireDirectory(), "*.pcap"))
        {
            var bytes = File.ReadAllBytes(path);
            Assert.That(Trace(bytes, out _), Is.EqualTo(TraceStream(bytes, out _)), path);
            files++;
        }

        Assert.That(files, Is.GreaterThan(0));
    }

    [Test]
    public void StreamReader_AnyCutOrCorruptedFile_SameOutcomeAsSpanReader()
    {
        var valid = PcapReaderTests.Write(PcapLinkType.LinuxCookedV2, true, false, [Ipv4Packet, Ipv4Packet, Ipv4Packet]);
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

            bytes = bytes[..t.cut];
            var span = Trace(bytes, out var spanStatus);
            var stream = TraceStream(bytes, out var streamStatus);
            return span.SequenceEqual(stream) && spanStatus == streamStatus;
        }).QuickCheckThrowOnFailure();
    }

    [Test]
    public void TryOpen_OwnedStreamWithBadHeader_DisposesIt()
    {
        var stream = new MemoryStream(new byte[10]);
        Assert.That(PcapStreamReader.TryOpen(stream, out var reader, ownsStream: true), Is.EqualTo(PcapStatus.TruncatedFileHeader));
        Assert.That(reader, Is.Null);
        Assert.That(stream.CanRead, Is.False);
    }

    [Test]
    public void ReadNext_AfterTheEnd_KeepsReturningEnd()
    {
        using var stream = new MemoryStream(PcapReaderTests.Write(PcapLinkType.Raw, false, false, [Ipv4Packet]));
        Assert.That(PcapStreamReader.TryOpen(stream, out var reader), Is.EqualTo(PcapStatus.Ok));
        using (reader)
        {
            Assert.That(reader!.ReadNext(out _), Is.EqualTo(PcapStatus.Ok));
            Assert.That(reader.ReadNext(out _), Is.EqualTo(PcapStatus.End));
            Assert.That(reader.ReadNext(out _), Is.EqualTo(PcapStatus.End));
        }
    }

    /// <summary>Each record as "number offset seconds.ns original link-status ip-hex", then the final status.</summary>
    private static List<string> Trace(byte[] file, out PcapStatus final)
    {
        var lines = new List<string>();
        final = PcapReader.TryCreate(file, out var reader);
        if (final != PcapStatus.Ok)
        {
            return lines;
        }

        while ((final = reader.ReadNext(out var record)) == PcapStatus.Ok)
        {
            lines.Add(Describe(record));
        }

        return lines;
    }

    private static List<string> TraceStream(byte[] file, out PcapStatus final)
    {
        var lines = new List<string>();
        using var stream = new MemoryStream(file);
        final = PcapStreamReader.TryOpen(stream, out var reader);
        if (final != PcapStatus.Ok)
        {
            return lines;
        }

        using (reader)
        {
            while ((final = reader!.ReadNext(out var record)) == PcapStatus.Ok)
            {
                lines.Add(Describe(record));
            }
        }

        return lines;
    }

    private static string Describe(in PcapRecord record)
    {
        var status = record.TryGetIpPacket(out var ip);
        return $"{record.Number} {record.Offset} {record.Seconds}.{record.Nanoseconds} {record.OriginalLength} {status} {Convert.ToHexString(ip)} {Convert.ToHexString(record.Frame)}";
    }
}
