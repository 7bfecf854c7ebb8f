using System.Diagnostics;
using ProxySelection.Wire.Pcap;

namespace ProxySelection.Host.Tests.Pcap;

/// <summary>tshark reads the files our writer produces: link type, byte order and timestamp precision as written.</summary>
[NonParallelizable]
public class PcapWriterTsharkTests
{
    private static readonly byte[] Ipv4 = Convert.FromHexString(
        "450000407ba84000400632e8c6120001c61200029ee64650748ffe9200000000b002faf0df2f0000020405b40402080afbba5e97000000000103030a1e040101");

    private static readonly byte[] Ipv6 = Convert.FromHexString(
        "60088fbf0024064020010db800000000000000000000000120010db8000000000000000000000002ecf04650c9e11c02000000009002fd20ce5e0000020405a0010104020103030a1e040101");

    [TestCase(PcapLinkType.Ethernet, true, true)]
    [TestCase(PcapLinkType.LinuxCooked, false, false)]
    [TestCase(PcapLinkType.LinuxCookedV2, true, false)]
    [TestCase(PcapLinkType.Raw, false, true)]
    [TestCase(PcapLinkType.RawIPv4, true, true)]
    [TestCase(PcapLinkType.RawIPv6, false, false)]
    public void Tshark_ReadsOurFile_SamePacketsAndTimestamps(PcapLinkType link, bool bigEndian, bool nano)
    {
        var packets = link switch
        {
            PcapLinkType.RawIPv4 => new[] { Ipv4 },
            PcapLinkType.RawIPv6 => new[] { Ipv6 },
            _ => new[] { Ipv4, Ipv6 },
        };
        var path = Path.Combine(Path.GetTempPath(), $"proxysel-writer-{Guid.NewGuid():N}.pcap");
        try
        {
            using (var stream = File.Create(path))
            using (var writer = new PcapWriter(stream, link, nano, bigEndian))
            {
                foreach (var packet in packets)
                {
                    writer.WriteIpPacket(packet, 1_700_000_000, 123_456_789);
                }
            }

            var lines = RunTshark(path);
            Assert.That(lines, Has.Length.EqualTo(packets.Length), string.Join('\n', lines));
            for (int i = 0; i < packets.Length; i++)
            {
                var fields = lines[i].Split('\t');
                var source = packets[i][0] >> 4 == 4 ? fields[0] : fields[1];
                using (Assert.EnterMultipleScope())
                {
                    Assert.That(source, Is.EqualTo(packets[i][0] >> 4 == 4 ? "198.18.0.1" : "2001:db8::1"));
                    Assert.That(fields[2], Is.EqualTo("1"), "TCP checksum status good");
                    Assert.That(fields[3], Is.EqualTo(nano ? "1700000000.123456789" : "1700000000.123456000"));
                }
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static string[] RunTshark(string path)
    {
        if (!File.Exists(Tshark.Executable))
        {
            Assert.Fail($"{Tshark.Executable} is not installed (apt-get install tshark)");
        }

        var psi = new ProcessStartInfo(Tshark.Executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[]
        {
            "-r", path, "-T", "fields", "-o", "tcp.check_checksum:TRUE",
            "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.checksum.status", "-e", "frame.time_epoch",
        })
        {
            psi.ArgumentList.Add(arg);
        }

        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        _ = process.StandardError.ReadToEndAsync();
        Assert.That(process.WaitForExit(TimeSpan.FromSeconds(60)), Is.True, "tshark did not finish");
        Assert.That(process.ExitCode, Is.Zero);
        return stdout.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }
}
