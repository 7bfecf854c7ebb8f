using System.Globalization;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;
using ProxySelection.Lab.ScaleOut;

namespace ProxySelection.IntegrationTests.ScaleOut;

/// <summary>
/// Issue 14's host-configured deployment: the same 3 instances serve SOCKS5 on an anycast service address
/// (<see cref="EcmpInstancesTopology.ServiceV4"/>, on every instance's loopback, announced over BGP with the served
/// prefix and spread by the router's resilient group); the MPTCP client's join goes to the holder's unicast address (C
/// flag, ADD_ADDR) as in the transparent deployment.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class AnycastSocksTests
{
    private const int Instances = 3;

    /// <summary>
    /// SIGKILL of one instance's daemon while 15 SOCKS downloads run: ExecStopPost's withdraw takes the service address
    /// back, only that instance's SOCKS connections break, the others finish with the right checksum, and new SOCKS
    /// connections to the anycast address all succeed.
    /// </summary>
    [Test]
    public async Task KilledInstance_OnlyItsSocksConnectionsBreak_AndNewOnesToTheAnycastAddressSucceed()
    {
        const int Long = 15;
        const int Fresh = 10;
        await using var lab = await ScaleOutLab.StartWarmAsync(Instances, Instances, warmUp: false);
        var (longSha, sha) = (lab.LongSha, lab.Sha);
        var clientBefore = await ScaleOutLab.CountersAsync(lab.Topology.Client);
        var (running, held) = await lab.StartLongTransfersAsync(Long, socks: true);
        var joins = (await ScaleOutLab.CountersAsync(lab.Topology.Client))["MPTcpExtMPJoinSynAckRx"] - clientBefore["MPTcpExtMPJoinSynAckRx"];
        int victim = held.ToList().IndexOf(held.Max()) + 1;
        bool allRunning = !running.IsCompleted;
        var victimPorts = await lab.ClientPortsHeldAsync(victim, EcmpInstancesTopology.SocksPort);
        Assert.That(LabNative.kill(lab.DaemonPid(victim), LabNative.SigKill), Is.Zero);
        var detection = await lab.Topology.WaitForGroupAsync(g => g.Count == Instances - 1 && !g.Contains(EcmpInstancesTopology.InstanceAddress(victim)),
            ScaleOutLab.Timeout, EcmpInstancesTopology.ServiceGroupId);
        var fresh = await lab.DownloadAsync("file.bin", Fresh, parallel: Fresh, rate: "4M", "fresh", socks: true);
        var longs = await running.WaitAsync(ScaleOutLab.Timeout * 2);
        var wrapper = lab.Instance(victim).Output;
        TestContext.Progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"SOCKS: held [{string.Join(' ', held)}], joins {joins} of {Long}; killed instance {victim}: kill -> service address group without it in {detection.TotalMilliseconds:F0} ms; " +
            $"long downloads failed {longs.Count(d => d.Curl.ExitCode != 0)} of {Long}, the victim had {victimPorts.Count} in flight; fresh failed {fresh.Count(d => d.Curl.ExitCode != 0)} of {Fresh}"));

        var ok = longs.Where(d => d.Curl.ExitCode == 0).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(allRunning, Is.True, "the long downloads were still running at the kill");
            Assert.That(held.Sum(), Is.EqualTo(Long), "each SOCKS connection held by exactly one instance");
            Assert.That(joins, Is.EqualTo(Long), "every SOCKS connection got its second subflow, to its holder's unicast address");
            Assert.That(wrapper, Does.Contain("stop-post: daemon exited, status 137; ran the withdraw command (exit 0)"));
            Assert.That(longs.Where(d => d.Curl.ExitCode != 0).Select(d => d.Curl.StdOut.Trim().Split(' ')[^1]), Is.SubsetOf(victimPorts).And.Not.Empty,
                "the broken connections are the killed instance's");
            Assert.That(ok.Select(d => ProxyLab.Sha256Of(d.Output)), Is.All.EqualTo(longSha), "the others finished intact");
            Assert.That(fresh.Select(d => d.Curl.ExitCode), Is.All.Zero, string.Join("\n", fresh.Select(d => d.Curl.StdErr)));
            Assert.That(fresh.Select(d => File.Exists(d.Output) ? ProxyLab.Sha256Of(d.Output) : "missing"), Is.All.EqualTo(sha));
            Assert.That(detection, Is.LessThan(TimeSpan.FromSeconds(5)), "withdrawn well within the BGP hold time's order");
        });
    }

    /// <summary>
    /// SIGTERM to one instance's daemon while 15 SOCKS downloads run: the daemon withdraws the service address first, its
    /// SOCKS connections finish over their joins to its unicast address (0 lost), and new SOCKS connections after the
    /// withdrawal all succeed on the others (none reaches it). Connections that reach the instance as its drain begins
    /// are <see cref="SocksDrainWindowTests"/>'s.
    /// </summary>
    [Test]
    public async Task DrainedInstance_IsWithdrawnFirst_ItsSocksConnectionsFinish_AndNewOnesSucceedOnTheOthers()
    {
        const int Long = 15;
        const int Fresh = 10;
        await using var lab = await ScaleOutLab.StartWarmAsync(Instances, Instances, warmUp: false);
        var (longSha, sha) = (lab.LongSha, lab.Sha);
        var (running, held) = await lab.StartLongTransfersAsync(Long, socks: true);
        int drained = held.ToList().IndexOf(held.Max()) + 1;
        var drainedNs = lab.Topology.Instances[drained - 1];
        var inFlight = await lab.ClientPortsHeldAsync(drained, EcmpInstancesTopology.SocksPort);
        var wrapper = lab.Instance(drained);
        Assert.That(LabNative.kill(lab.DaemonPid(drained), LabNative.SigTerm), Is.Zero);
        var withdrawal = await lab.Topology.WaitForGroupAsync(g => g.Count == Instances - 1 && !g.Contains(EcmpInstancesTopology.InstanceAddress(drained)),
            ScaleOutLab.Timeout, EcmpInstancesTopology.ServiceGroupId);
        var heldAtWithdrawal = (await ScaleOutLab.CountersAsync(drainedNs))["MPTcpExtMPCapableSYNRX"];
        var fresh = await lab.DownloadAsync("file.bin", Fresh, parallel: Fresh, rate: "4M", "fresh", socks: true);
        var heldAfter = (await ScaleOutLab.CountersAsync(drainedNs))["MPTcpExtMPCapableSYNRX"];
        var longs = await running.WaitAsync(ScaleOutLab.Timeout * 2);
        var exit = await wrapper.WaitForExitAsync(ScaleOutLab.Timeout);
        var output = wrapper.Output;
        var lines = string.Join('\n', output.Split('\n').Where(l => l.StartsWith("stop-post:", StringComparison.Ordinal) || l.StartsWith("proxysel: ", StringComparison.Ordinal) && !l.StartsWith("proxysel: syn", StringComparison.Ordinal)));
        TestContext.Progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"SOCKS: held [{string.Join(' ', held)}], drained instance {drained} with {inFlight.Count} in flight: SIGTERM -> service group without it in {withdrawal.TotalMilliseconds:F0} ms; " +
            $"long downloads failed {longs.Count(d => d.Curl.ExitCode != 0)} of {Long}; fresh failed {fresh.Count(d => d.Curl.ExitCode != 0)} of {Fresh}\n{lines}"));

        Assert.Multiple(() =>
        {
            Assert.That(inFlight, Is.Not.Empty, "the drained instance held SOCKS connections at the drain");
            Assert.That(longs.Select(d => d.Curl.ExitCode), Is.All.Zero, string.Join("\n", longs.Select(d => d.Curl.StdErr)));
            Assert.That(longs.Select(d => File.Exists(d.Output) ? ProxyLab.Sha256Of(d.Output) : "missing"), Is.All.EqualTo(longSha), "0 SOCKS connections lost");
            Assert.That(fresh.Select(d => d.Curl.ExitCode), Is.All.Zero, string.Join("\n", fresh.Select(d => d.Curl.StdErr)));
            Assert.That(fresh.Select(d => File.Exists(d.Output) ? ProxyLab.Sha256Of(d.Output) : "missing"), Is.All.EqualTo(sha));
            Assert.That(heldAfter, Is.EqualTo(heldAtWithdrawal), "no new SOCKS connection reached the drained instance after its withdrawal");
            int route = output.IndexOf("service address withdrawn from the routing engine", StringComparison.Ordinal);
            int draining = output.IndexOf("proxysel: draining", StringComparison.Ordinal);
            int drainedLine = output.IndexOf("proxysel: drained", StringComparison.Ordinal);
            int address = output.IndexOf("proxysel: withdrew 1 announced address", StringComparison.Ordinal);
            Assert.That(route, Is.GreaterThanOrEqualTo(0).And.LessThan(draining), "the service address withdrawn before the daemon drains");
            Assert.That(drainedLine, Is.GreaterThan(draining), "every SOCKS connection finished within the drain timeout");
            Assert.That(address, Is.GreaterThan(drainedLine), "the announced unicast address kept until the SOCKS connections ended");
            Assert.That(exit, Is.Zero, "the daemon stopped cleanly");
        });
    }

    /// <summary>
    /// A fourth instance joins while 15 SOCKS transfers run over three: the service address's resilient group gives it
    /// only idle buckets, so no established SOCKS flow moves (the router sends none of their packets toward it, and it
    /// holds none of them), every transfer finishes intact, and new SOCKS connections reach it.
    /// </summary>
    [Test]
    public async Task AddedInstance_TakesNoEstablishedSocksFlow_AndGetsNewOnes()
    {
        const int Long = 15;
        const int Fresh = 30;
        await using var lab = await ScaleOutLab.StartWarmAsync(Instances + 1, Instances, warmUp: false);
        var (longSha, sha) = (lab.LongSha, lab.Sha);
        var added = lab.Topology.Instances[Instances];
        var device = string.Create(CultureInfo.InvariantCulture, $"inst{Instances + 1}");
        // A rule without a target: it only counts the packets for the service address the router sends toward the new instance.
        string[] counting = ["-w", "-I", "FORWARD", "-o", device, "-d", EcmpInstancesTopology.ServiceV4, "-p", "tcp", "--dport",
            EcmpInstancesTopology.SocksPort.ToString(CultureInfo.InvariantCulture)];
        await lab.Topology.Router.CheckAsync("iptables", counting);
        var (running, _) = await lab.StartLongTransfersAsync(Long, socks: true);
        bool runningAtTheAdd = !running.IsCompleted;
        await lab.StartInstanceAsync(Instances + 1);
        var longs = await running.WaitAsync(ScaleOutLab.Timeout * 2);
        var towardIt = await ServicePacketsTowardAsync(lab, device);
        var heldBefore = (await ScaleOutLab.CountersAsync(added))["MPTcpExtMPCapableSYNRX"];
        var fresh = await lab.DownloadAsync("file.bin", Fresh, parallel: 15, rate: "8M", "fresh", socks: true);
        var heldNew = (await ScaleOutLab.CountersAsync(added))["MPTcpExtMPCapableSYNRX"] - heldBefore;
        TestContext.Progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"SOCKS: the router sent {towardIt} packets of the running transfers toward the added instance, which held {heldBefore} of them; then {heldNew} of {Fresh} new connections"));

        Assert.Multiple(() =>
        {
            Assert.That(runningAtTheAdd, Is.True, "the SOCKS transfers were running when the instance was added");
            Assert.That(towardIt, Is.Zero, "no packet of the running SOCKS transfers went toward the new instance");
            Assert.That(heldBefore, Is.Zero, "no running SOCKS connection was held by the new instance");
            Assert.That(longs.Select(d => d.Curl.ExitCode), Is.All.Zero, string.Join("\n", longs.Select(d => d.Curl.StdErr)));
            Assert.That(longs.Select(d => File.Exists(d.Output) ? ProxyLab.Sha256Of(d.Output) : "missing"), Is.All.EqualTo(longSha));
            Assert.That(fresh.Select(d => d.Curl.ExitCode), Is.All.Zero, string.Join("\n", fresh.Where(d => d.Curl.ExitCode != 0).Select(d => d.Curl.StdErr)));
            Assert.That(fresh.Select(d => File.Exists(d.Output) ? ProxyLab.Sha256Of(d.Output) : "missing"), Is.All.EqualTo(sha));
            Assert.That(heldNew, Is.Positive, "new SOCKS connections reach the added instance");
        });
    }

    /// <summary>The packet count of the router's counting rule for the service address toward <paramref name="device"/>.</summary>
    private static async Task<long> ServicePacketsTowardAsync(ScaleOutLab lab, string device)
    {
        var rules = await lab.Topology.Router.CheckAsync("iptables", ["-w", "-nvx", "-L", "FORWARD"]);
        var line = rules.Split('\n').First(l => l.Contains(device, StringComparison.Ordinal) && l.Contains(EcmpInstancesTopology.ServiceV4, StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0], CultureInfo.InvariantCulture);
    }
}
