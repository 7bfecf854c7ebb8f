using ProxySelection.Wire.Pcap;

namespace ProxySelection.Host.Tests;

/// <summary>
/// Every frame of every vector capture (not only the kept ones in the JSONL), decoded by us and by tshark, agrees
/// on every IP/TCP/option field. tshark's generated analysis items are left out here: on whole captures they depend
/// on connection state (the JSONL tests and the cross-check compare them).
/// </summary>
[NonParallelizable]
public class VectorPcapTsharkTests
{
    public static IEnumerable<TestCaseData> Captures()
    {
        if (VectorFiles.DirectoryOrNull is not { } dir)
        {
            yield return new TestCaseData(null!).SetName("VectorsDirectoryMissing");
            yield break;
        }

        foreach (var file in Directory.GetFiles(dir, "*.pcap").Order(StringComparer.Ordinal))
        {
            yield return new TestCaseData(file).SetName($"WholeCapture_{Path.GetFileNameWithoutExtension(file)}");
        }
    }

    [TestCaseSource(nameof(Captures))]
    public void WholeCapture_EveryFrame_AgreesWithTshark(string? pcap)
    {
        if (pcap is null)
        {
            VectorFiles.RequireDirectory();
            return;
        }

        var theirs = Tshark.Decode(pcap, 18000, 18100);
        var bytes = File.ReadAllBytes(pcap);
        Assert.That(PcapReader.TryCreate(bytes, out var reader), Is.EqualTo(PcapStatus.Ok));
        var mismatches = new List<string>();
        int frames = 0;
        while (reader.ReadNext(out var record) == PcapStatus.Ok)
        {
            Assert.That(record.TryGetIpPacket(out var ip), Is.EqualTo(PcapStatus.Ok));
            int frame = record.Number;
            var ours = Decoded.Packet(ip);
            Assert.That(ours.TryGetProperty("error", out _), Is.False, $"frame {frame}: {ours.GetRawText()}");
            mismatches.AddRange(TsharkComparison.Compare(ours, theirs[frame - 1], compareAnalysis: false)
                .Select(m => $"frame {frame}: {m}"));
            frames++;
        }

        Assert.That(frames, Is.EqualTo(theirs.Count));
        Assert.That(mismatches, Is.Empty);
    }
}
