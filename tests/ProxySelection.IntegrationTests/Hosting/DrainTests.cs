using System.Text.Json.Nodes;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Hosting;

/// <summary>
/// Issue 6: draining is an engine state. New connections pass untouched, but an MP_JOIN of a connection the proxy
/// still holds is taken, so a held MPTCP connection that adds a subflow during the drain keeps it.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class DrainTests
{
    private const int SigTerm = 15;
    private const int Size = 16 * 1024 * 1024;

    [Test]
    public async Task Drain_HeldConnectionAddsASubflow_JoinInterceptedWhileNewConnectionsPass()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", Size);
        var small = lab.WriteFile("small.bin", 16 * 1024);
        await lab.StartNginxAsync();
        var client = lab.Topology.Client;
        // One subflow to begin with: the second path's endpoint comes back only during the drain.
        await client.IpAsync("mptcp", "endpoint", "flush");
        var socket = Path.Combine(lab.Directory, "proxysel.sock");
        var config = Path.Combine(lab.Directory, "proxysel.json");
        await File.WriteAllTextAsync(config, $$"""{ "Proxy": { "Ports": [80], "DrainTimeout": "40s", "ControlSocket": "{{socket}}" } }""");
        var proxy = await ProxyLab.StartProxysel(lab.Topology.Proxy, ["--config", config]).WaitRunningAsync();

        // 16 MB at 1 MB/s: the drain starts early in the transfer (the socket buffers hold a few MB).
        var output = Path.Combine(lab.Directory, "download.bin");
        var transfer = lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(60), "--limit-rate", "1M");
        await ProxyLab.WaitForLineAsync(proxy, "accepted ", "token=");
        Assert.That(proxy.Signal(SigTerm), Is.True);
        await ProxyLab.WaitForLineAsync(proxy, "proxysel: draining ", "held connection");

        // The kernel's path manager opens a subflow for established connections when a subflow endpoint is added.
        await client.IpAsync("mptcp", "endpoint", "add", TwoPathTopology.ClientPath2V4, "dev", TwoPathTopology.ClientPath2, "subflow");
        var join = await ProxyLab.WaitForLineAsync(proxy, "syn " + TwoPathTopology.ClientPath2V4, "MpJoin");
        var (held, _) = await ControlCli.WaitForSubflowsAsync(lab, socket, 2);
        var status = JsonNode.Parse(await ControlCli.ControlAsync(lab, "status", "--socket", socket, "--json"))!;
        var passedOutput = Path.Combine(lab.Directory, "small.out");
        var passed = await lab.CurlAsync(ProxyLab.Url(false, "small.bin"), mptcp: true, passedOutput);

        var curl = await transfer.WaitAsync(TimeSpan.FromSeconds(70));
        var exit = await proxy.WaitForExitAsync(TimeSpan.FromSeconds(50));
        TestContext.Progress.WriteLine(proxy.Output);
        var rules = await lab.Topology.Proxy.CheckAsync("iptables-save", [], ProxyLab.Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(join, Does.EndWith(": InterceptJoin (JoinTokenOwned)"), "the held connection's new subflow was taken during the drain");
            Assert.That((string?)status["daemon"]!["state"], Is.EqualTo("draining"));
            Assert.That(held["subflows"]!.AsArray().Select(s => (string?)s!["remote"]), Has.Some.StartsWith(TwoPathTopology.ClientPath2V4 + ":"));
            Assert.That(ProxyLab.Lines(proxy, "syn "), Has.Some.EndsWith(": Pass (Draining)"), "the new connection passed untouched");
            Assert.That(passed.ExitCode, Is.Zero, passed.StdErr);
            Assert.That(ProxyLab.Sha256Of(passedOutput), Is.EqualTo(small));
            Assert.That(ProxyLab.Lines(proxy, "accepted "), Has.Count.EqualTo(1), "the connection made during the drain never reached the proxy");
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha), "the held transfer finished intact");
            Assert.That(ProxyLab.Lines(proxy, "relay "), Has.One.Contains(": Completed ").And.Contains(" subflows=2 "));
            Assert.That(ProxyLab.Lines(proxy, "proxysel: drained"), Has.Count.EqualTo(1));
            Assert.That(exit, Is.Zero);
            Assert.That(rules, Does.Not.Contain("PSEL"), "every rule removed");
        });
    }
}
