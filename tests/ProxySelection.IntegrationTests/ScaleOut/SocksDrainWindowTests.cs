using System.Globalization;
using System.Text;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;
using ProxySelection.Lab.ScaleOut;

namespace ProxySelection.IntegrationTests.ScaleOut;

/// <summary>
/// Issue 14's drain of the anycast SOCKS5 service address, in the window itself. SOCKS clients that the instance has
/// accepted but whose request it has not read yet (<see cref="PausedSocksClients"/>) send it once the drain has begun;
/// one of them never does. Meanwhile SOCKS downloads start every 50 ms from a second before the SIGTERM until a second
/// after the router's group has lost the instance, so some reach it in every state (accept queue, handshake, request
/// read, relayed). Every connection must finish with the right checksum, the silent one is closed at the handshake
/// timeout, and the drain ends on its own within its bound.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class SocksDrainWindowTests
{
    private const int Instances = 3;
    private const int Paused = 9;
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(50);

    /// <summary>What <see cref="ScaleOutLab.StartInstanceAsync"/> sets: the drain's bound.</summary>
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(30);

    [Test]
    public async Task DrainedInstance_ServesEverySocksConnectionThatReachesItAsTheDrainBegins_AndTheDrainEndsWithinItsBound()
    {
        await using var lab = await ScaleOutLab.StartWarmAsync(Instances, Instances, warmUp: false);
        // 512 KiB at 2 MB/s: each lasts about a quarter of a second, so at the signal some are connecting, some relaying.
        var sha = lab.WriteFile("small.bin", 512 * 1024);
        var goFile = Path.Combine(lab.Directory, "paused.go");
        var paused = lab.Topology.Client.StartProcess("python3", [PausedSocksClients.Write(lab.Directory), EcmpInstancesTopology.ServiceV4,
            EcmpInstancesTopology.SocksPort.ToString(CultureInfo.InvariantCulture), EcmpInstancesTopology.ServerV4, "/small.bin",
            Paused.ToString(CultureInfo.InvariantCulture), goFile]);
        await paused.WaitForOutputAsync("all ready", ScaleOutLab.Timeout);
        // The paused clients' ports, by the instance holding them: the drained one is the one with the most.
        var ports = await Task.WhenAll(Enumerable.Range(1, Instances).Select(i => lab.ClientPortsHeldAsync(i, EcmpInstancesTopology.SocksPort)));
        int drained = Array.IndexOf(ports, ports.MaxBy(p => p.Count)) + 1;
        var atDrained = ports[drained - 1];
        var clients = Lines(paused.Output, "ready").ToDictionary(f => int.Parse(f[1], CultureInfo.InvariantCulture), f => f[2]);
        var silent = clients.First(c => atDrained.Contains(c.Value)).Key;

        var drainedNs = lab.Topology.Instances[drained - 1];
        var wrapper = lab.Instance(drained);
        var pcap = Path.Combine(lab.Directory, "drained.pcap");
        var capture = drainedNs.StartProcess("tcpdump", ["-i", "any", "-n", "-U", "-s", "128", "-w", pcap,
            string.Create(CultureInfo.InvariantCulture, $"tcp port {EcmpInstancesTopology.SocksPort}")]);
        await capture.WaitForOutputAsync("listening on", ScaleOutLab.Timeout);
        using var stopStream = new CancellationTokenSource();
        var window = StreamAsync(lab, "small.bin", stopStream.Token);
        await Task.Delay(TimeSpan.FromSeconds(1));
        var atSignal = (await ScaleOutLab.CountersAsync(drainedNs))["MPTcpExtMPCapableSYNRX"];
        var signalled = DateTimeOffset.UtcNow;
        var sinceSignal = System.Diagnostics.Stopwatch.StartNew();
        Assert.That(LabNative.kill(lab.DaemonPid(drained), LabNative.SigTerm), Is.Zero);
        await wrapper.WaitForOutputAsync("proxysel: draining", ScaleOutLab.Timeout);
        PausedSocksClients.Go(goFile, [silent]);
        var withdrawal = await lab.Topology.WaitForGroupAsync(g => g.Count == Instances - 1 && !g.Contains(EcmpInstancesTopology.InstanceAddress(drained)),
            ScaleOutLab.Timeout, EcmpInstancesTopology.ServiceGroupId);
        // Past the convergence: the last downloads start where the router no longer sends them to the drained instance.
        await Task.Delay(TimeSpan.FromSeconds(1));
        await stopStream.CancelAsync();
        var inWindow = await window.WaitAsync(ScaleOutLab.Timeout * 2);
        await paused.WaitForExitAsync(ScaleOutLab.Timeout * 2);
        var exit = await wrapper.WaitForExitAsync(DrainTimeout + ScaleOutLab.Timeout);
        var stoppedAfter = sinceSignal.Elapsed;
        var afterSignal = (await ScaleOutLab.CountersAsync(drainedNs))["MPTcpExtMPCapableSYNRX"] - atSignal;
        await capture.StopAsync(TimeSpan.FromSeconds(5), LabNative.SigInt);

        var output = wrapper.Output;
        var pausedOut = paused.Output;
        var done = Lines(pausedOut, "done").Where(f => f[3] == "0" && f[4] == sha).Select(f => int.Parse(f[1], CultureInfo.InvariantCulture)).ToHashSet();
        var closed = Lines(pausedOut, "closed").Select(f => int.Parse(f[1], CultureInfo.InvariantCulture)).ToList();
        var failed = inWindow.Where(d => d.Curl.ExitCode != 0 || !File.Exists(d.Output) || ProxyLab.Sha256Of(d.Output) != sha).ToList();
        var lostPorts = failed.Select(d => d.Curl.StdOut.Trim().Split(' ')[^1])
            .Concat(clients.Where(c => c.Key != silent && !done.Contains(c.Key)).Select(c => c.Value)).ToList();
        var report = new StringBuilder(string.Create(CultureInfo.InvariantCulture,
            $"SOCKS drain window: instance {drained} held {atDrained.Count} of {Paused} paused clients (ports {string.Join(' ', atDrained)}, silent: {clients[silent]}); " +
            $"{inWindow.Count} downloads every {Interval.TotalMilliseconds:F0} ms, {afterSignal} reached the drained instance after the signal; " +
            $"SIGTERM (at {signalled.ToUnixTimeMilliseconds() / 1000.0:F3}) -> service group without it in {withdrawal.TotalMilliseconds:F0} ms, " +
            $"daemon exited {exit} after {stoppedAfter.TotalMilliseconds:F0} ms; downloads lost {failed.Count}, paused clients lost {Paused - 1 - done.Count}\n{pausedOut}"));
        report.AppendJoin('\n', output.Split('\n').Where(l => l.StartsWith("stop-post:", StringComparison.Ordinal) || l.StartsWith("proxysel: ", StringComparison.Ordinal) && !l.StartsWith("proxysel: syn", StringComparison.Ordinal)));
        foreach (var port in lostPorts)
        {
            // Where each lost connection was when the drain began: the daemon's lines of its port and the capture of it.
            report.Append(CultureInfo.InvariantCulture, $"\nlost: client port {port}; {string.Join("; ", failed.Where(d => d.Curl.StdOut.EndsWith(" " + port, StringComparison.Ordinal)).Select(d => d.Curl.StdErr.Trim()))}\n");
            report.AppendJoin('\n', output.Split('\n').Where(l => l.Contains(":" + port + " ", StringComparison.Ordinal) || l.Contains(":" + port + ":", StringComparison.Ordinal)));
            if (port is not "" and not "0")
            {
                var packets = await drainedNs.RunAsync("tcpdump", ["-r", pcap, "-n", "-tt", "tcp port " + port]);
                report.Append('\n').Append(packets.StdOut);
            }
        }

        TestContext.Progress.WriteLine(report.ToString());
        Assert.Multiple(() =>
        {
            Assert.That(atDrained, Has.Count.GreaterThanOrEqualTo(2), "the drained instance held paused clients besides the silent one");
            Assert.That(done, Is.EquivalentTo(clients.Keys.Where(k => k != silent)), "every paused client sent its request in the drain and got the file intact");
            Assert.That(closed, Is.EqualTo(new[] { silent }), "the silent client was closed (at the handshake timeout)");
            Assert.That(inWindow, Has.Count.GreaterThanOrEqualTo(20), "downloads started across the window");
            Assert.That(failed, Is.Empty, "0 SOCKS downloads lost in the drain's window");
            Assert.That(output, Does.Contain("proxysel: drained"), "the drain ended on its own, not at its timeout");
            Assert.That(output, Does.Contain(" refused=0 "), "no SOCKS client refused by the draining instance");
            Assert.That(stoppedAfter, Is.LessThan(DrainTimeout), "the drain ended within its bound");
            Assert.That(exit, Is.Zero, "the daemon stopped cleanly");
        });
    }

    /// <summary>The fields of the lines of <paramref name="output"/> that start with <paramref name="kind"/>.</summary>
    private static IEnumerable<string[]> Lines(string output, string kind) =>
        output.Split('\n').Select(l => l.Trim().Split(' ')).Where(f => f.Length >= 3 && f[0] == kind);

    /// <summary>A new SOCKS download of <paramref name="file"/> every <see cref="Interval"/> until <paramref name="stop"/> (bounded: 200 and 20 s); returns them all once each has ended.</summary>
    private static async Task<IReadOnlyList<(CommandResult Curl, string Output)>> StreamAsync(ScaleOutLab lab, string file, CancellationToken stop)
    {
        var started = new List<Task<IReadOnlyList<(CommandResult Curl, string Output)>>>();
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        for (int n = 0; n < 200 && !stop.IsCancellationRequested && DateTime.UtcNow < until; n++)
        {
            started.Add(lab.DownloadAsync(file, 1, 1, "2M", string.Create(CultureInfo.InvariantCulture, $"window{n}"), socks: true));
            try
            {
                await Task.Delay(Interval, stop);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        return [.. (await Task.WhenAll(started)).SelectMany(r => r)];
    }
}
