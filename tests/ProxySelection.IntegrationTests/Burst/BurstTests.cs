using System.Globalization;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Burst;

/// <summary>
/// Issue 13, bursts: concurrent cache-miss MPTCP connections (one per port, so every one needs a probe), from clients
/// with two paths, through a downgrade proxy to a TCP-only server, with every core kept busy — against the same burst
/// with no proxy — on the daemon's kernel path (its defaults) and on the queue path. Asserted: the server accepts exactly
/// one connection per client (no phantom probe connection), no client fails that succeeds without the proxy, no probe is
/// declared timed out, no join is passed to the TCP-only origin, and clients get an established second subflow as often
/// as from an MPTCP server with no proxy. CI runs 50 clients; <c>PSEL_BURST=200</c> the issue's burst.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class BurstTests
{
    private const int FirstPort = 20000;

    /// <summary>Clients per source /24: below the negotiator's probe rate limit per source prefix (64/s, spec §7.5.1), which
    /// otherwise passes most of one host's burst untouched (measured: 126 of 200 ProbeRateLimited from one /24).</summary>
    private const int ClientsPerPrefix = 50;
    private static readonly TimeSpan SubflowWait = TimeSpan.FromSeconds(5);

    /// <param name="kernelPath">The daemon's defaults (kernel fast path and signing), or the queue path the lab pins.</param>
    [TestCase(true, TestName = "BurstOfCacheMisses_BusyCores_ServerAcceptsOnePerClient_NoClientFails_NoProbeTimedOut_NoJoinPassed(kernel path)")]
    [TestCase(false, TestName = "BurstOfCacheMisses_BusyCores_ServerAcceptsOnePerClient_NoClientFails_NoProbeTimedOut_NoJoinPassed(queue path)")]
    public async Task BurstOfCacheMisses_BusyCores_ServerAcceptsOnePerClient_NoClientFails_NoProbeTimedOut_NoJoinPassed(bool kernelPath)
    {
        int clients = int.TryParse(Environment.GetEnvironmentVariable("PSEL_BURST"), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is > 0 and <= 1000 ? n : 50;
        await using var lab = await ProxyLab.StartAsync();
        var (server, client) = BurstPrograms.Write(lab.Directory);
        var topology = lab.Topology;
        // The extra client prefixes 198.18.1x.0/24 on the client's path1, routed back by the proxy.
        var sources = Enumerable.Range(0, (clients + ClientsPerPrefix - 1) / ClientsPerPrefix).Select(k => $"198.18.{10 + k}.2").ToList();
        await topology.Client.IpBatchAsync(sources.Select(a => $"addr add {a}/24 dev {TwoPathTopology.ClientPath1}"));
        await topology.Proxy.IpBatchAsync(sources.Select(a => $"route add {a}/32 via {TwoPathTopology.ClientPath1V4} dev {TwoPathTopology.ProxyPath1}"));

        // One bounded burner per core, in a lab namespace so the lab stops them (by pid) whatever happens.
        for (int i = 0; i < Environment.ProcessorCount; i++)
        {
            topology.Server.StartProcess("timeout", ["300", "sh", "-c", "while :; do :; done"]);
        }

        var tcpAlone = await BurstAsync(lab, server, client, mptcpServer: false, clients, sources, proxy: null);
        var mptcpAlone = await BurstAsync(lab, server, client, mptcpServer: true, clients, sources, proxy: null);

        string ports = string.Join(',', Enumerable.Range(FirstPort, clients));
        var proxy = ProxyLab.StartProxysel(topology.Proxy, ["--ports", ports, .. kernelPath ? ProxyLab.KernelPath : []]);
        await proxy.WaitForOutputAsync("proxysel: running", ProxyLab.Timeout);
        var through = await BurstAsync(lab, server, client, mptcpServer: false, clients, sources, proxy);
        await proxy.StopAsync(ProxyLab.Timeout);

        var events = ProxyLab.Events(proxy);
        int timedOut = events.Count(e => e is { Event: "hold", Reason: "ProbeTimedOut" });
        int joinsPassed = events.Count(e => (e.Event == "join" || e is { Event: "syn", Kind: "MpJoin" }) && e.Verdict == "Pass");
        int intercepted = events.Count(e => e is { Event: "hold", Outcome: "Intercept" });
        TestContext.Progress.WriteLine("proxy decisions: " + string.Join(", ", events.Where(e => e.Event is "syn" or "hold" or "join")
            .GroupBy(e => $"{e.Event} {e.Kind} {e.Verdict ?? e.Outcome} ({e.Reason})").Select(g => $"{g.Key} x{g.Count()}")));
        TestContext.Progress.WriteLine($"{(kernelPath ? "kernel path" : "queue path")}: {clients} clients from {sources.Count} /24s, {Environment.ProcessorCount} cores busy: no proxy, TCP server: {tcpAlone}; no proxy, MPTCP server: {mptcpAlone}; "
            + $"downgrade proxy, TCP server: {through}; holds intercepted {intercepted}, probe timeouts {timedOut}, joins passed {joinsPassed}; "
            + $"second subflows {through.SecondSubflows} against {mptcpAlone.SecondSubflows} from an MPTCP server with no proxy");

        Assert.Multiple(() =>
        {
            Assert.That(tcpAlone.Accepted, Is.EqualTo(clients), "without the proxy: one accept per client");
            Assert.That(through.Accepted, Is.EqualTo(clients), "through the proxy: one accept per client, no phantom probe connection");
            Assert.That(through.Failures, Is.LessThanOrEqualTo(tcpAlone.Failures), "no client fails that succeeds without the proxy: " + string.Join("; ", through.FailureLines));
            Assert.That(joinsPassed, Is.Zero, "no join passed toward the TCP-only origin");
            Assert.That(timedOut, Is.Zero, "no probe declared timed out");
            Assert.That(through.SecondSubflows, Is.GreaterThanOrEqualTo(mptcpAlone.SecondSubflows), "a second subflow as often as with no proxy");
        });
    }

    private static async Task<BurstOutcome> BurstAsync(ProxyLab lab, string server, string client, bool mptcpServer, int clients, IReadOnlyList<string> sources, LabProcess? proxy)
    {
        var topology = lab.Topology;
        var serverProcess = BurstPrograms.StartServer(topology.Server, server, mptcpServer, FirstPort, clients, TimeSpan.FromMinutes(3));
        try
        {
            await serverProcess.WaitForOutputAsync("listening", ProxyLab.Timeout);
            var run = await topology.Client.RunAsync("python3",
                [client, TwoPathTopology.ServerV4, BurstPrograms.Arg(FirstPort), BurstPrograms.Arg(clients), BurstPrograms.Arg(SubflowWait.TotalSeconds), string.Join(',', sources)],
                TimeSpan.FromSeconds(120));
            Assert.That(run.ExitCode, Is.Zero, run.StdErr);
            // The server's last accepts (a phantom probe connection included) are printed by now or soon: give it a moment.
            await Task.Delay(TimeSpan.FromSeconds(1));
            var lines = run.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var accepted = serverProcess.Output.Split('\n').Count(l => l.StartsWith("accept ", StringComparison.Ordinal));
            var failures = lines.Where(l => l.StartsWith("fail ", StringComparison.Ordinal)).ToList();
            int subflows = lines.Count(l => l.StartsWith("ok ", StringComparison.Ordinal) && int.Parse(l.Split(' ')[2], CultureInfo.InvariantCulture) >= 1);
            int fellBack = lines.Count(l => l.StartsWith("ok ", StringComparison.Ordinal) && l.EndsWith(" -1", StringComparison.Ordinal));
            Assert.That(lines.Length, Is.EqualTo(clients), "one line per client: " + run.StdOut + run.StdErr + (proxy is null ? "" : string.Join('\n', ProxyLab.Events(proxy).Select(ProxyEventText.Format).TakeLast(20))));
            return new BurstOutcome(accepted, failures.Count, subflows, fellBack, failures);
        }
        finally
        {
            await serverProcess.StopAsync(ProxyLab.Timeout);
        }
    }

    private sealed record BurstOutcome(int Accepted, int Failures, int SecondSubflows, int FellBackToTcp, IReadOnlyList<string> FailureLines)
    {
        public override string ToString() => $"accepted {Accepted}, failed {Failures}, second subflow {SecondSubflows}, plain TCP {FellBackToTcp}";
    }
}
