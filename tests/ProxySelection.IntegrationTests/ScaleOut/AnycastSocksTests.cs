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
}
