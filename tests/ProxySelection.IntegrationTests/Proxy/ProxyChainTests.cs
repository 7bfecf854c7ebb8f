using ProxySelection.IntegrationTests.Hosting;
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
    internal const string Origin = "198.18.5.2";

    // Large enough that the second subflow always joins before the transfer ends: a 64 KiB file finished in 16 ms
    // on one subflow in a loaded CI run, before the client's MP_JOIN got through.
    internal const int FileSize = 64 * 1024 * 1024;

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

    /// <summary>
    /// Issue 6, keys reloaded without a restart: both proxies go through the three steps of a rotation (spec §9.4) by
    /// SIGHUP, P2 one step ahead of P1 in the middle, and after every step P2's defer still verifies at P1 and P1's
    /// probe at P2, so P2 holds each new connection (nearest-server), with the caches flushed so every one is probed.
    /// </summary>
    [Test]
    public async Task Sighup_KeyRotationStepByStep_SignalsVerifyThroughoutAndTheSameProxyHolds()
    {
        await using var lab = await ProxyLab.StartAsync();
        var p2Namespace = await BuildChainAsync(lab);
        await File.WriteAllTextAsync(Path.Combine(lab.Directory, "old.key"), "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
        await File.WriteAllTextAsync(Path.Combine(lab.Directory, "new.key"), "f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff");
        string Config(int id) => Path.Combine(lab.Directory, $"p{id}.json");
        string Socket(int id) => Path.Combine(lab.Directory, $"p{id}.sock");
        async Task Step(int id, string keys)
        {
            await File.WriteAllTextAsync(Config(id),
                $$"""{ "Proxy": { "Ports": [80], "Policy": "nearest-server", "ProxyId": {{id}}, "ControlSocket": "{{Socket(id)}}", "DrainTimeout": "0s", {{keys}} } }""");
        }

        const string Old = "\"KeyFile\": \"old.key\", \"KeyId\": 1";
        const string Accept = Old + ", \"VerifyKeyFile\": \"new.key\", \"VerifyKeyId\": 2";
        const string Switch = "\"KeyFile\": \"new.key\", \"KeyId\": 2, \"VerifyKeyFile\": \"old.key\", \"VerifyKeyId\": 1";
        const string Retire = "\"KeyFile\": \"new.key\", \"KeyId\": 2";
        await Step(1, Old);
        await Step(2, Old);
        var p1 = ProxyLab.StartProxysel(lab.Topology.Proxy, ["--config", Config(1)]);
        await p1.WaitForOutputAsync("proxysel: running", ProxyLab.Timeout);
        var p2 = ProxyLab.StartProxysel(p2Namespace, ["--config", Config(2)]);
        await p2.WaitForOutputAsync("proxysel: running", ProxyLab.Timeout);
        var reloads = new Dictionary<LabProcess, int> { [p1] = 0, [p2] = 0 };
        async Task Reload(LabProcess proxy, int id, string keys)
        {
            await Step(id, keys);
            Assert.That(proxy.Signal(1), Is.True);
            reloads[proxy]++;
            var deadline = DateTime.UtcNow + ProxyLab.Timeout;
            while (ProxyLab.Lines(proxy, "proxysel: reload").Count < reloads[proxy] && DateTime.UtcNow < deadline)
            {
                await Task.Delay(20);
            }
        }

        async Task Connection()
        {
            await ControlCli.ControlAsync(lab, "cache", "flush", "--socket", Socket(1));
            await ControlCli.ControlAsync(lab, "cache", "flush", "--socket", Socket(2));
            var output = Path.Combine(lab.Directory, "small.out");
            var curl = await lab.CurlAsync($"http://{Origin}/small.bin", mptcp: true, output, null, "--range", "0-65535");
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
        }

        await Connection();                 // old key everywhere
        await Reload(p1, 1, Accept);
        await Reload(p2, 2, Accept);
        await Connection();                 // both accept the new key, both sign with the old
        await Reload(p2, 2, Switch);
        await Connection();                 // skew: P2 signs with the new key, P1 still with the old
        await Reload(p1, 1, Switch);
        await Reload(p1, 1, Retire);
        await Reload(p2, 2, Retire);
        await Connection();                 // new key only

        await ProxyLab.WaitForLineAsync(p2, "relay ", "");
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        while (ProxyLab.Lines(p2, "relay ").Count < 4 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }

        await p1.StopAsync(ProxyLab.Timeout);
        await p2.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine($"P1:\n{p1.Output}\nP2:\n{p2.Output}");
        Assert.Multiple(() =>
        {
            Assert.That(ProxyLab.Lines(p1, "proxysel: reload"), Is.EqualTo(new[]
            {
                "proxysel: reloaded policy=NearestServer priority=8 probe_timeout=250ms drain_timeout=0s key_id=1 verify_key_id=2",
                "proxysel: reloaded policy=NearestServer priority=8 probe_timeout=250ms drain_timeout=0s key_id=2 verify_key_id=1",
                "proxysel: reloaded policy=NearestServer priority=8 probe_timeout=250ms drain_timeout=0s key_id=2",
            }));
            Assert.That(ProxyLab.Lines(p2, "proxysel: reload"), Has.Count.EqualTo(3).And.All.StartWith("proxysel: reloaded "));
            Assert.That(ProxyLab.Lines(p1, "probe "), Has.Count.EqualTo(4).And.All.Contains("signal=Defer proxy=2"), "P2's defer verified at P1 in every step");
            Assert.That(ProxyLab.Lines(p1, "hold "), Has.Count.EqualTo(4).And.All.Contains("Release (ProxyBeyond)"));
            Assert.That(ProxyLab.Counter(p1, "intercepted"), Is.Zero, "single holder throughout");
            Assert.That(ProxyLab.Counter(p2, "intercepted"), Is.EqualTo(4), "P1's probe verified at P2 in every step");
            Assert.That(ProxyLab.Lines(p2, "relay "), Has.Count.EqualTo(4).And.All.Contains("Completed"));
        });
    }

    private static async Task<(LabProcess P1, LabProcess P2)> StartChainAsync(ProxyLab lab, string policy)
    {
        var p2 = await BuildChainAsync(lab);
        var key = Path.Combine(lab.Directory, "operator.key");
        await File.WriteAllTextAsync(key, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
        var first = await lab.StartProxyAsync("--key-file", key, "--policy", policy, "--proxy-id", "1");
        var second = await ProxyLab.StartProxyInAsync(p2, "--key-file", key, "--policy", policy, "--proxy-id", "2");
        return (first, second);
    }

    /// <summary>Turns the two-path lab's server namespace into P2's, with the origin (nginx, <see cref="FileSize"/> bytes) behind it.</summary>
    internal static async Task<NetNamespace> BuildChainAsync(ProxyLab lab)
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

        lab.WriteFile("small.bin", FileSize);
        await lab.StartNginxInAsync(origin, [Origin]);
        return p2;
    }

    private static async Task DownloadAsync(ProxyLab lab)
    {
        var output = Path.Combine(lab.Directory, "small.out");
        var curl = await lab.CurlAsync($"http://{Origin}/small.bin", mptcp: true, output);
        Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
        Assert.That(new FileInfo(output).Length, Is.EqualTo(FileSize));
    }
}
