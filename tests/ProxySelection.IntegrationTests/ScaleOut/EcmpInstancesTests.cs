using System.Globalization;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;
using ProxySelection.Lab.ScaleOut;

namespace ProxySelection.IntegrationTests.ScaleOut;

/// <summary>
/// Issue 14 on the real kernel: clients → a BIRD router (ECMP by L4 hash over a resilient nexthop group) → 3
/// <c>proxysel run --role downgrade</c> instances that announce the server prefix over BGP and their own address with
/// ADD_ADDR, with the C flag set → a TCP-only nginx. M is <c>PSEL_SCALEOUT_CLIENTS</c> (default 30, kept small for CI).
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class EcmpInstancesTests
{
    private const int Instances = 3;

    private static int Clients =>
        int.TryParse(Environment.GetEnvironmentVariable("PSEL_SCALEOUT_CLIENTS"), CultureInfo.InvariantCulture, out var m) && m > 0 ? m : 30;

    [TestCase(false)]
    [TestCase(true)]
    public async Task EveryConnectionJoinsTheInstanceHoldingItsToken_AndFlowsSpreadOverTheInstances(bool v6)
    {
        await using var lab = await ScaleOutLab.StartWarmAsync(Instances, Instances, v6: v6);
        var sha = lab.Sha;
        var warmUp = lab.WarmUpRounds;

        var before = await Task.WhenAll(lab.Topology.Instances.Select(ScaleOutLab.CountersAsync));
        var clientBefore = await ScaleOutLab.CountersAsync(lab.Topology.Client);
        // The client's path-manager events, stamped as they arrive (bash's clock, no fork per line): for a connection
        // that never joined, when its ADD_ADDR came and when it closed (printed, to tell a failure's cause).
        var monitor = lab.Topology.Client.StartProcess("bash", ["-c", "stdbuf -oL ip mptcp monitor | while IFS= read -r l; do echo \"$EPOCHREALTIME $l\"; done"]);
        var captures = await JoinCaptures.StartIfAskedAsync(lab);
        var started = System.Diagnostics.Stopwatch.StartNew();
        // Paced by the server (ScaleOutLab.PacedRate: 3 to 4 s each), so every connection is still established when
        // its join completes; 25 at a time: M=30 in about 8 s, M=300 in about 50 s.
        var downloads = await lab.DownloadAsync("paced/file.bin", Clients, parallel: 25, rate: "100M", "c");
        var elapsed = started.Elapsed;
        await Task.Delay(500);
        await monitor.StopAsync(TimeSpan.FromSeconds(10));
        var unjoined = Unjoined(monitor.Output);
        if (captures is not null)
        {
            TestContext.Progress.WriteLine(await captures.ReportAsync());
            // The unjoined connections' own events, with their addresses and ports.
            foreach (var token in unjoined.Select(u => u.Text.Split(' ', ':')[1]))
            {
                TestContext.Progress.WriteLine(string.Join('\n', monitor.Output.Split('\n').Where(l => l.Contains("token=" + token, StringComparison.Ordinal))));
            }
        }

        var after = await Task.WhenAll(lab.Topology.Instances.Select(ScaleOutLab.CountersAsync));
        var client = Delta(clientBefore, await ScaleOutLab.CountersAsync(lab.Topology.Client));
        var perInstance = Enumerable.Range(0, Instances).Select(i => Delta(before[i], after[i])).ToList();

        var held = perInstance.Select(c => c["MPTcpExtMPCapableSYNRX"]).ToList();
        var joins = perInstance.Select(c => c["MPTcpExtMPJoinSynRx"]).ToList();
        var completed = perInstance.Select(c => c["MPTcpExtMPJoinAckRx"]).ToList();
        var seconds = downloads.Select(d => ScaleOutLab.Seconds(d.Curl)).Order().ToList();
        // Reported, not asserted: the daemon's per-connection lines are sampled under load; the kernel counters are exact.
        var intercepted = Enumerable.Range(1, Instances)
            .Select(i => lab.Instance(i).Output.Split('\n').Count(l => l.Contains("InterceptJoin (JoinTokenOwned", StringComparison.Ordinal)))
            .ToList();
        double even = (double)Clients / Instances;
        // ±25 % of even (the acceptance) once that is at least 3 standard deviations of the binomial share (M >= 288);
        // for a smaller M, 25 % is within chance, so 3.5 standard deviations.
        double sigma = Math.Sqrt(Clients * (1.0 / Instances) * (1 - (1.0 / Instances)));
        double tolerance = 0.25 * even >= 3 * sigma ? 0.25 * even : 3.5 * sigma;
        TestContext.Progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{(v6 ? "IPv6" : "IPv4")} M={Clients} in {elapsed.TotalSeconds:F1} s (after {warmUp} warm-up rounds), each download {seconds[0]:F2}-{seconds[^1]:F2} s (median {seconds[seconds.Count / 2]:F2}); " +
            $"held per instance [{string.Join(' ', held)}], joins [{string.Join(' ', joins)}], completed [{string.Join(' ', completed)}], " +
            $"daemon InterceptJoin lines incl. warm-up (the queue's; a join taken in the kernel, Proxy:KernelJoins, has none) [{string.Join(' ', intercepted)}], even {even:F1} ± {tolerance:F1}; client: {Format(client)}"));
        for (int i = 0; i < Instances; i++)
        {
            TestContext.Progress.WriteLine($"instance {i + 1}: {Format(perInstance[i])}");
        }

        // Diagnosis only (the counters are asserted; the monitor may miss events): a connection with an ADD_ADDR and no
        // join, with its path-manager events; "closed first" if it closed before its ADD_ADDR or within 1 s of it (the
        // race the server's pace removes: the whole file and the DATA_FIN reaching the client before its join completed).
        TestContext.Progress.WriteLine($"client path manager: {unjoined.Count} connection(s) with an ADD_ADDR and no join, {unjoined.Count(u => u.ClosedBeforeJoined)} of them closed first{string.Concat(unjoined.Select(u => "\n  " + u.Text))}");

        Assert.Multiple(() =>
        {
            Assert.That(downloads.Select(d => d.Curl.ExitCode), Is.All.Zero, string.Join("\n", downloads.Where(d => d.Curl.ExitCode != 0).Select(d => d.Curl.StdErr)));
            Assert.That(downloads.Select(d => File.Exists(d.Output) ? ProxyLab.Sha256Of(d.Output) : "missing"), Is.All.EqualTo(sha));
            Assert.That(seconds, Is.All.GreaterThanOrEqualTo(2.0), "every connection stayed established at least 2 s (the server's pace)");
            Assert.That(client["MPTcpExtMPCapableSYNACKRX"], Is.EqualTo(Clients), "every connection is MPTCP end to end at the client");
            Assert.That(client["MPTcpExtAddAddr"], Is.EqualTo(Clients), "every connection got its holder's ADD_ADDR");
            Assert.That(client["MPTcpExtMPJoinSynAckRx"], Is.EqualTo(Clients), "every connection got its second subflow");
            Assert.That(held.Sum(), Is.EqualTo(Clients), "each connection held by exactly one instance");
            Assert.That(joins, Is.EqualTo(held), "each instance received exactly the joins of the connections it holds");
            Assert.That(completed, Is.EqualTo(held), "each instance completed exactly the joins of the connections it holds");
            foreach (var name in new[] { "MPTcpExtMPJoinNoTokenFound", "MPTcpExtMPJoinRejected", "MPTcpExtMPJoinSynBackupRx", "MPTcpExtMismatchPortSynRx", "MPTcpExtMismatchPortAckRx", "MPTcpExtMPJoinAckHMacFailure" })
            {
                Assert.That(perInstance.Select(c => c[name]), Is.All.Zero, name + ": no join reset or refused");
            }

            Assert.That(held.Select(h => Math.Abs(h - even)), Is.All.LessThanOrEqualTo(tolerance), "spread over the instances");
        });
    }

    /// <summary>
    /// SIGKILL of one instance's daemon: ExecStopPost's withdraw (<c>proxysel-stop-post</c> here) takes the prefix back at
    /// once (measured: kill → the router's group without it); only the connections it held break, the others finish with the right checksum, and new
    /// connections after the withdrawal all succeed (none lands on the dead instance).
    /// </summary>
    [Test]
    public async Task KilledInstance_OnlyItsConnectionsBreak_AndNewConnectionsSucceedOnceItIsWithdrawn()
    {
        const int Long = 15;
        const int Fresh = 10;
        await using var lab = await ScaleOutLab.StartWarmAsync(Instances, Instances);
        var (longSha, sha, warmUp) = (lab.LongSha, lab.Sha, lab.WarmUpRounds);
        var (running, held) = await lab.StartLongTransfersAsync(Long);
        // The victim: the instance holding the most, so the test kills at least one connection.
        int victim = held.ToList().IndexOf(held.Max()) + 1;
        bool allRunning = !running.IsCompleted;
        // The client ports of the victim's established first subflows (the kernel's view, just before the kill).
        var victimPorts = await lab.ClientPortsHeldAsync(victim, 80);
        Assert.That(LabNative.kill(lab.DaemonPid(victim), LabNative.SigKill), Is.Zero);
        var detection = await lab.Topology.WaitForGroupAsync(g => g.Count == Instances - 1 && !g.Contains(EcmpInstancesTopology.InstanceAddress(victim)), ScaleOutLab.Timeout);
        var heldAfterKill = (await ScaleOutLab.CountersAsync(lab.Topology.Instances[victim - 1]))["MPTcpExtMPCapableSYNRX"];
        var fresh = await lab.DownloadAsync("file.bin", Fresh, parallel: Fresh, rate: "4M", "fresh");
        var heldAtEnd = (await ScaleOutLab.CountersAsync(lab.Topology.Instances[victim - 1]))["MPTcpExtMPCapableSYNRX"];
        var longs = await running.WaitAsync(ScaleOutLab.Timeout * 2);
        var wrapper = lab.Instance(victim).Output;
        TestContext.Progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"warm-up rounds {warmUp}; held [{string.Join(' ', held)}], killed instance {victim}: kill -> router group without it in {detection.TotalMilliseconds:F0} ms; " +
            $"long downloads failed {longs.Count(d => d.Curl.ExitCode != 0)} of {Long}, the victim had {victimPorts.Count} in flight\n{string.Join('\n', wrapper.Split('\n').Where(l => l.StartsWith("stop-post:", StringComparison.Ordinal)))}"));

        var ok = longs.Where(d => d.Curl.ExitCode == 0).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(allRunning, Is.True, "the long downloads were still running at the kill");
            Assert.That(wrapper, Does.Contain("stop-post: daemon exited, status 137; ran the withdraw command (exit 0)"));
            Assert.That(longs.Where(d => d.Curl.ExitCode != 0).Select(d => d.Curl.StdOut.Trim().Split(' ')[^1]), Is.SubsetOf(victimPorts).And.Not.Empty,
                "the broken connections are the killed instance's");
            Assert.That(ok.Select(d => ProxyLab.Sha256Of(d.Output)), Is.All.EqualTo(longSha), "the others finished intact");
            Assert.That(fresh.Select(d => d.Curl.ExitCode), Is.All.Zero, string.Join("\n", fresh.Select(d => d.Curl.StdErr)));
            Assert.That(fresh.Select(d => File.Exists(d.Output) ? ProxyLab.Sha256Of(d.Output) : "missing"), Is.All.EqualTo(sha));
            Assert.That(heldAtEnd, Is.EqualTo(heldAfterKill), "no new connection reached the dead instance");
            Assert.That(detection, Is.LessThan(TimeSpan.FromSeconds(5)), "withdrawn well within the BGP hold time's order");
        });
    }

    /// <summary>
    /// Drain of one instance by the daemon itself (SIGTERM to its pid, as systemd stops it): it withdraws the BGP route
    /// first, the instance leaves the router's group, its held connections finish over their joins to its announced
    /// address, which it removes (REMOVE_ADDR) only after them, and nothing is lost.
    /// </summary>
    [Test]
    public async Task DrainedInstance_IsWithdrawnFirst_AndNoConnectionIsLost()
    {
        const int Long = 15;
        await using var lab = await ScaleOutLab.StartWarmAsync(Instances, Instances);
        var longSha = lab.LongSha;
        var (running, held) = await lab.StartLongTransfersAsync(Long);
        int drained = held.ToList().IndexOf(held.Max()) + 1;
        var inFlight = (await lab.Topology.Instances[drained - 1].CheckAsync("ss", ["-HMn", "state", "established"]))
            .Split('\n', StringSplitOptions.RemoveEmptyEntries).Length;
        var wrapper = lab.Instance(drained);
        Assert.That(LabNative.kill(lab.DaemonPid(drained), LabNative.SigTerm), Is.Zero);
        var withdrawal = await lab.Topology.WaitForGroupAsync(g => g.Count == Instances - 1 && !g.Contains(EcmpInstancesTopology.InstanceAddress(drained)), ScaleOutLab.Timeout);
        var longs = await running.WaitAsync(ScaleOutLab.Timeout * 2);
        var exit = await wrapper.WaitForExitAsync(ScaleOutLab.Timeout);
        var output = wrapper.Output;
        TestContext.Progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"held [{string.Join(' ', held)}], drained instance {drained} with {inFlight} in flight: SIGTERM -> router group without it in {withdrawal.TotalMilliseconds:F0} ms; " +
            $"long downloads failed {longs.Count(d => d.Curl.ExitCode != 0)} of {Long}\n{string.Join('\n', output.Split('\n').Where(l => l.StartsWith("stop-post:", StringComparison.Ordinal) || l.StartsWith("proxysel: ", StringComparison.Ordinal) && !l.StartsWith("proxysel: syn", StringComparison.Ordinal)))}"));

        Assert.Multiple(() =>
        {
            Assert.That(inFlight, Is.Positive, "the drained instance held connections at the drain");
            Assert.That(longs.Select(d => d.Curl.ExitCode), Is.All.Zero, string.Join("\n", longs.Select(d => d.Curl.StdErr)));
            Assert.That(longs.Select(d => File.Exists(d.Output) ? ProxyLab.Sha256Of(d.Output) : "missing"), Is.All.EqualTo(longSha));
            int route = output.IndexOf("service address withdrawn from the routing engine", StringComparison.Ordinal);
            int draining = output.IndexOf("proxysel: draining", StringComparison.Ordinal);
            int drainedLine = output.IndexOf("proxysel: drained", StringComparison.Ordinal);
            int address = output.IndexOf("proxysel: withdrew 1 announced address", StringComparison.Ordinal);
            Assert.That(route, Is.GreaterThanOrEqualTo(0).And.LessThan(draining), "the route withdrawn before the daemon drains");
            Assert.That(drainedLine, Is.GreaterThan(draining), "every held connection finished within the drain timeout");
            Assert.That(address, Is.GreaterThan(drainedLine), "the announced address kept until the held connections ended");
            Assert.That(exit, Is.Zero, "the daemon stopped cleanly");
        });
    }

    /// <summary>
    /// A fourth instance joins while 15 transfers run over three: the resilient group gives it only idle buckets, so no
    /// established flow moves (the new instance forwards none of their packets) and every transfer finishes intact.
    /// </summary>
    [Test]
    public async Task AddedInstance_TakesNoEstablishedFlow_AndGetsNewOnes()
    {
        const int Long = 15;
        await using var lab = await ScaleOutLab.StartWarmAsync(Instances + 1, Instances);
        var (longSha, sha) = (lab.LongSha, lab.Sha);
        var added = lab.Topology.Instances[Instances];
        var (running, _) = await lab.StartLongTransfersAsync(Long);
        var forwardedBefore = (await LabNetwork.ReadCountersAsync(added, "IpForwDatagrams"))["IpForwDatagrams"];
        bool runningAtTheAdd = !running.IsCompleted;
        await lab.StartInstanceAsync(Instances + 1);
        var longs = await running.WaitAsync(ScaleOutLab.Timeout * 2);
        var forwarded = (await LabNetwork.ReadCountersAsync(added, "IpForwDatagrams"))["IpForwDatagrams"] - forwardedBefore;
        var heldBefore = (await ScaleOutLab.CountersAsync(added))["MPTcpExtMPCapableSYNRX"];
        var fresh = await lab.DownloadAsync("file.bin", 30, parallel: 15, rate: "8M", "fresh");
        var heldNew = (await ScaleOutLab.CountersAsync(added))["MPTcpExtMPCapableSYNRX"] - heldBefore;
        TestContext.Progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"added instance forwarded {forwarded} packets of the running transfers, held {heldBefore} of them; then {heldNew} of 30 new connections"));

        Assert.Multiple(() =>
        {
            Assert.That(runningAtTheAdd, Is.True, "the transfers were running when the instance was added");
            Assert.That(heldBefore, Is.Zero, "no running connection was held by the new instance");
            Assert.That(forwarded, Is.Zero, "no packet of the running transfers went through the new instance");
            Assert.That(longs.Select(d => d.Curl.ExitCode), Is.All.Zero, string.Join("\n", longs.Select(d => d.Curl.StdErr)));
            Assert.That(longs.Select(d => File.Exists(d.Output) ? ProxyLab.Sha256Of(d.Output) : "missing"), Is.All.EqualTo(longSha));
            Assert.That(fresh.Select(d => File.Exists(d.Output) ? ProxyLab.Sha256Of(d.Output) : "missing"), Is.All.EqualTo(sha));
            Assert.That(heldNew, Is.Positive, "new connections reach the added instance");
        });
    }

    /// <summary>
    /// From stamped <c>ip mptcp monitor</c> lines, each connection (token) that was announced an address but never had a
    /// second subflow established, as its events with the milliseconds since it was created.
    /// </summary>
    private static List<(string Text, bool ClosedBeforeJoined)> Unjoined(string monitor)
    {
        var events = new Dictionary<string, List<(double At, string Name)>>();
        foreach (var line in monitor.Split('\n'))
        {
            var m = System.Text.RegularExpressions.Regex.Match(line, @"^(\d+\.\d+) \[\s*([A-Z_]+)\] token=([0-9a-f]+)");
            if (m.Success)
            {
                var list = events.TryGetValue(m.Groups[3].Value, out var l) ? l : events[m.Groups[3].Value] = [];
                list.Add((double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), m.Groups[2].Value));
            }
        }

        return [.. events.Where(kv => kv.Value.Any(e => e.Name == "ANNOUNCED") && kv.Value.All(e => e.Name != "SF_ESTABLISHED"))
            .Select(kv => (
                $"token {kv.Key}: " + string.Join(' ', kv.Value.Select(e => string.Create(CultureInfo.InvariantCulture, $"{e.Name}@{(e.At - kv.Value[0].At) * 1000:F0}ms"))),
                ClosedBeforeJoined(kv.Value)))];
    }

    /// <summary>Closed before its ADD_ADDR, or within 1 s of it (before a lost join SYN/ACK would have been retransmitted).</summary>
    private static bool ClosedBeforeJoined(List<(double At, string Name)> events)
    {
        int closed = events.FindIndex(e => e.Name == "CLOSED");
        int announced = events.FindIndex(e => e.Name == "ANNOUNCED");
        return closed >= 0 && (closed < announced || events[closed].At - events[announced].At < 1.0);
    }

    private static Dictionary<string, long> Delta(IReadOnlyDictionary<string, long> before, IReadOnlyDictionary<string, long> after) =>
        after.ToDictionary(kv => kv.Key, kv => kv.Value - before.GetValueOrDefault(kv.Key));

    private static string Format(IReadOnlyDictionary<string, long> counters) =>
        string.Join(' ', counters.Where(kv => kv.Value != 0).Select(kv => $"{kv.Key.Replace("MPTcpExt", "", StringComparison.Ordinal)}={kv.Value}"));
}
