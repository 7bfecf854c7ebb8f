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

    [Test]
    public async Task Drain_HeldConnectionAddsASubflow_JoinInterceptedWhileNewConnectionsPass()
    {
        await using var held = await HeldTransfer.PrepareAsync();
        var lab = held.Lab;
        var client = lab.Topology.Client;
        // One subflow to begin with: the second path's endpoint comes back only during the drain.
        await client.IpAsync("mptcp", "endpoint", "flush");
        var socket = Path.Combine(lab.Directory, "proxysel.sock");
        // 16 MB at 1 MB/s: the drain starts early in the transfer (the socket buffers hold a few MB).
        await held.StartAsync($$"""{ "Ports": [80], "DrainTimeout": "40s", "ControlSocket": "{{socket}}" }""", "1M", TimeSpan.FromSeconds(60));
        var proxy = held.Proxy;
        await held.SignalAsync(SigTerm, "proxysel: draining ", "held connection");

        // The kernel's path manager opens a subflow for established connections when a subflow endpoint is added.
        await client.IpAsync("mptcp", "endpoint", "add", TwoPathTopology.ClientPath2V4, "dev", TwoPathTopology.ClientPath2, "subflow");
        // The holder took the join (Proxy:KernelJoins: in the kernel, with no syn line; else the engine's InterceptJoin):
        // the held connection's second subflow comes from the second path's address, and the stop line counts the join.
        var (heldConnection, _) = await ControlCli.WaitForSubflowsAsync(lab, socket, 2);
        var status = JsonNode.Parse(await ControlCli.ControlAsync(lab, "status", "--socket", socket, "--json"))!;
        var (passed, passedSha) = await held.FetchSmallAsync();

        var curl = await held.TransferAsync();
        var (exit, rules) = await held.WaitForExitAsync(TimeSpan.FromSeconds(50));

        Assert.Multiple(() =>
        {
            Assert.That(ProxyLab.Counter(proxy, "joins_intercepted") + ProxyLab.Counter(proxy, "joins_kernel"), Is.GreaterThanOrEqualTo(1),
                "the held connection's new subflow was taken by its holder during the drain");
            Assert.That(ProxyLab.Counter(proxy, "joins_passed"), Is.Zero, "no join went on to the server");
            Assert.That(ProxyLab.Lines(proxy, "syn ").Where(l => l.Contains("MpJoin", StringComparison.Ordinal)),
                Has.All.EndsWith(": InterceptJoin (JoinTokenOwned)"), "a join the engine decided was taken");
            Assert.That((string?)status["daemon"]!["state"], Is.EqualTo("draining"));
            Assert.That(heldConnection["subflows"]!.AsArray().Select(s => (string?)s!["remote"]), Has.Some.StartsWith(TwoPathTopology.ClientPath2V4 + ":"));
            Assert.That(ProxyLab.Lines(proxy, "syn "), Has.Some.EndsWith(": Pass (Draining)"), "the new connection passed untouched");
            Assert.That(passed.ExitCode, Is.Zero, passed.StdErr);
            Assert.That(passedSha, Is.EqualTo(held.SmallSha));
            Assert.That(ProxyLab.Lines(proxy, "accepted "), Has.Count.EqualTo(1), "the connection made during the drain never reached the proxy");
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(ProxyLab.Sha256Of(held.Output), Is.EqualTo(held.Sha), "the held transfer finished intact");
            Assert.That(ProxyLab.Lines(proxy, "relay "), Has.One.Contains(": Completed ").And.Contains(" subflows=2 "));
            Assert.That(ProxyLab.Lines(proxy, "proxysel: drained"), Has.Count.EqualTo(1));
            Assert.That(exit, Is.Zero);
            Assert.That(rules, Does.Not.Contain("PSEL"), "every rule removed");
        });
    }
}
