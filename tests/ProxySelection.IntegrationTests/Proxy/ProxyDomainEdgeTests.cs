using ProxySelection.Lab;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// Spec §7.12 on the real kernel: chain MPTCP client — P1 (downgrade) — P2 (edge) — TCP-only origin. P1's probe SYN
/// carries MP_CAPABLE and MP_PROXY; with <c>Proxy:EdgeInterfaces</c> naming P2's interface toward the origin, the origin
/// sees MP_CAPABLE but no MP_PROXY, and the connection works; without the setting it sees MP_PROXY.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class ProxyDomainEdgeTests
{
    private static readonly byte[] Key = Convert.FromHexString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");

    [TestCase(true)]
    [TestCase(false)]
    public async Task EdgeInterface_OriginSeesMpCapableButNoMpProxy_WithoutTheSettingItDoes(bool edge)
    {
        await using var lab = await ProxyLab.StartAsync();
        var p2Namespace = await ProxyChainTests.BuildChainAsync(lab);
        var keyFile = Path.Combine(lab.Directory, "operator.key");
        await File.WriteAllTextAsync(keyFile, Convert.ToHexString(Key));
        var p1 = await lab.StartProxyAsync("--key-file", keyFile, "--proxy-id", "1");
        string[] edgeSetting = edge ? ["--set", "Proxy:EdgeInterfaces=origin"] : [];
        var p2 = await ProxyLab.StartProxyInAsync(p2Namespace, ["--key-file", keyFile, "--proxy-id", "2", .. edgeSetting]);
        const string Syns = "tcp port 80 and tcp[tcpflags] & tcp-syn != 0";
        var atOrigin = await p2Namespace.StartCaptureAsync("origin", Path.Combine(lab.Directory, "p2-origin.pcap"), Syns);

        var output = Path.Combine(lab.Directory, "small.out");
        var curl = await lab.CurlAsync($"http://{ProxyChainTests.Origin}/small.bin", mptcp: true, output, null, "--range", "0-65535");
        var segments = Captures.Segments(await atOrigin.StopAsync(TimeSpan.FromSeconds(1)));
        await p1.StopAsync(ProxyLab.Timeout);
        await p2.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine($"P1:\n{p1.Output}\nP2:\n{p2.Output}");

        var towardOrigin = segments.Where(s => s.Destination == ProxyChainTests.Origin && s.IsSyn).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(new FileInfo(output).Length, Is.EqualTo(65_536));
            Assert.That(towardOrigin.Where(s => HasMptcpSubtype(s, 0)), Is.Not.Empty, "P1's probe SYN reached the origin with MP_CAPABLE");
            if (edge)
            {
                Assert.That(towardOrigin.Where(HasMpProxy), Is.Empty, "no MP_PROXY left the domain");
                Assert.That(ProxyLab.Counter(p2, "edge_stripped"), Is.GreaterThanOrEqualTo(1));
            }
            else
            {
                Assert.That(towardOrigin.Where(HasMpProxy), Is.Not.Empty, "without an edge, P1's Probe reaches the origin");
                Assert.That(ProxyLab.Counter(p2, "edge_stripped"), Is.Zero);
            }

            Assert.That(ProxyLab.Counter(p1, "intercepted"), Is.EqualTo(1), "P1 held the connection through the edge");
        });
    }

    private static bool HasMptcpSubtype(CapturedSegment segment, int subtype) => Options(segment).Any(o => o.Length >= 3 && o[0] == 30 && o[2] >> 4 == subtype);

    private static bool HasMpProxy(CapturedSegment segment) =>
        Options(segment).Any(o => o.Length >= 4 && o[0] == MpProxyOption.Kind && o[2] >> 4 == MpProxyOption.Subtype && o[3] == MpProxyOption.ExperimentId);

    private static List<byte[]> Options(CapturedSegment segment)
    {
        var found = new List<byte[]>();
        if (TcpHeader.TryParse(segment.Bytes, out var tcp) != WireError.None)
        {
            return found;
        }

        var options = tcp.Options;
        foreach (var option in new TcpOptionReader(options))
        {
            found.Add(option.Slice(options).ToArray());
        }

        return found;
    }
}
