using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// Two proxies on one path (client — P1 — P2 — origin server), both `proxysel run` with the same operator key: the
/// selection policy decides which one holds the connection, the other passes it (design §2 single holder, §4).
/// The two-path lab's server namespace becomes P2, with the origin behind it.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class ProxyChainTests
{
    private const string Origin = "198.18.5.2";

    [Test]
    public async Task FirstPolicy_ProxyNearestClientHolds_SecondPassesTheProbeAndTheConnection()
    {
        await using var lab = await ProxyLab.StartAsync();
        var (p1, p2) = await StartChainAsync(lab, "first");

        await DownloadAsync(lab);

        await p1.StopAsync(ProxyLab.Timeout);
        await p2.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine($"P1:\n{p1.Output}\nP2:\n{p2.Output}");
        Assert.Multiple(() =>
        {
            Assert.That(ProxyLab.Lines(p1, "relay ").Single(), Does.Contain("Completed").And.Contain("subflows=2"));
            Assert.That(ProxyLab.Counter(p1, "probes_adopted"), Is.EqualTo(1));
            Assert.That(ProxyLab.Lines(p2, "syn ").First(), Does.EndWith("Pass (NotSelected)"), "P2 saw P1's verified probe and let it go");
            Assert.That(ProxyLab.Counter(p2, "intercepted"), Is.Zero, "single holder");
            Assert.That(ProxyLab.Counter(p2, "relayed"), Is.Zero);
            Assert.That(ProxyLab.Counter(p2, "probes"), Is.Zero);
        });
    }

    [Test]
    public async Task NearestServerPolicy_SecondProxyAnswersTheProbeWithADefer_AndHoldsTheConnection()
    {
        await using var lab = await ProxyLab.StartAsync();
        var (p1, p2) = await StartChainAsync(lab, "nearest-server");

        await DownloadAsync(lab);

        await ProxyLab.WaitForLineAsync(p2, "relay ", "Completed");
        await p1.StopAsync(ProxyLab.Timeout);
        await p2.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine($"P1:\n{p1.Output}\nP2:\n{p2.Output}");
        Assert.Multiple(() =>
        {
            Assert.That(ProxyLab.Lines(p1, "probe ").Single(), Does.Contain("signal=Defer proxy=2"), "P1 read P2's verified defer (spec §7.4)");
            Assert.That(ProxyLab.Lines(p1, "hold ").Single(), Does.Contain("Release (ProxyBeyond)"));
            Assert.That(ProxyLab.Counter(p1, "intercepted"), Is.Zero, "single holder");
            Assert.That(ProxyLab.Counter(p1, "relayed"), Is.Zero);
            Assert.That(ProxyLab.Counter(p2, "probe_answers_sent"), Is.EqualTo(1));
            Assert.That(ProxyLab.Counter(p2, "intercepted"), Is.EqualTo(1));
            Assert.That(ProxyLab.Lines(p2, "relay ").Single(), Does.Contain("Completed").And.Contain("subflows=2"), "the join passed P1 and was intercepted at P2");
        });
    }

    private static async Task<(LabProcess P1, LabProcess P2)> StartChainAsync(ProxyLab lab, string policy)
    {
        var p2 = lab.Topology.Server;
        var origin = await lab.Lab.AddNamespaceAsync("origin").WaitAsync(ProxyLab.Timeout);
        await lab.Lab.ConnectAsync(p2, "origin", origin, "down").WaitAsync(ProxyLab.Timeout);
        await p2.IpAsync("addr", "add", "198.18.5.1/24", "dev", "origin").WaitAsync(ProxyLab.Timeout);
        await p2.EnableForwardingAsync().WaitAsync(ProxyLab.Timeout);
        await origin.IpAsync("addr", "add", $"{Origin}/24", "dev", "down").WaitAsync(ProxyLab.Timeout);
        await origin.IpAsync("route", "add", "default", "via", "198.18.5.1").WaitAsync(ProxyLab.Timeout);
        await origin.CheckAsync("ethtool", ["-K", "down", "tx", "off"], ProxyLab.Timeout);
        await lab.Topology.Proxy.IpAsync("route", "add", "198.18.5.0/24", "via", TwoPathTopology.ServerV4).WaitAsync(ProxyLab.Timeout);

        lab.WriteFile("small.bin", 64 * 1024);
        await lab.StartNginxInAsync(origin, [Origin]);
        var key = Path.Combine(lab.Directory, "operator.key");
        await File.WriteAllTextAsync(key, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
        var first = await lab.StartProxyAsync("--key-file", key, "--policy", policy, "--proxy-id", "1");
        var second = await ProxyLab.StartProxyInAsync(p2, "--key-file", key, "--policy", policy, "--proxy-id", "2");
        return (first, second);
    }

    private static async Task DownloadAsync(ProxyLab lab)
    {
        var output = Path.Combine(lab.Directory, "small.out");
        var curl = await lab.CurlAsync($"http://{Origin}/small.bin", mptcp: true, output);
        Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
        Assert.That(new FileInfo(output).Length, Is.EqualTo(64 * 1024));
    }
}
