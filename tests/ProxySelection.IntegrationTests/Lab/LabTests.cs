using System.Net;
using System.Net.Sockets;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Lab;

[TestFixture]
public sealed class LabTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Test]
    public async Task TwoPathTopology_Built_ClientReachesServerOverBothPathsInBothFamilies()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var t = await TwoPathTopology.BuildAsync(lab).WaitAsync(Timeout);

        foreach (var (source, target) in new[]
        {
            (TwoPathTopology.ClientPath1V4, TwoPathTopology.ServerV4),
            (TwoPathTopology.ClientPath2V4, TwoPathTopology.ServerV4),
            (TwoPathTopology.ClientPath1V6, TwoPathTopology.ServerV6),
            (TwoPathTopology.ClientPath2V6, TwoPathTopology.ServerV6),
        })
        {
            var seen = await ConnectOnceAsync(t.Client, source, t.Server, target).WaitAsync(Timeout);
            Assert.That(seen, Is.EqualTo(IPAddress.Parse(source)), $"{source} -> {target}");
        }

        Assert.That(await t.Proxy.ReadSysctlAsync("net.ipv4.ip_forward").WaitAsync(Timeout), Is.EqualTo("1"));
        Assert.That(await t.Client.ReadSysctlAsync("net.mptcp.blackhole_timeout").WaitAsync(Timeout), Is.EqualTo("0"));
        Assert.That(await t.Client.ReadSysctlAsync("net.ipv4.conf.path1.rp_filter").WaitAsync(Timeout), Is.EqualTo("0"));
        Assert.That(await t.Client.IpAsync("mptcp", "endpoint", "show").WaitAsync(Timeout), Does.Contain(TwoPathTopology.ClientPath2V4));
    }

    [Test]
    public async Task RunInNamespace_SocketsCreatedInside_LiveInThatNamespace()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var t = await TwoPathTopology.BuildAsync(lab).WaitAsync(Timeout);

        // 198.18.3.2 exists only in the server namespace: binding there proves the thread had entered it.
        using var listener = await t.Server.RunInNamespaceAsync(() =>
        {
            var l = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            l.Bind(new IPEndPoint(IPAddress.Parse(TwoPathTopology.ServerV4), 0));
            l.Listen();
            return l;
        }).WaitAsync(Timeout);
        var port = ((IPEndPoint)listener.LocalEndPoint!).Port;

        using var client = await t.Client.RunInNamespaceAsync(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp)).WaitAsync(Timeout);
        // Async I/O continues on pool threads (original namespace); the sockets keep their own namespaces.
        using var cts = new CancellationTokenSource(Timeout);
        var accept = listener.AcceptAsync(cts.Token).AsTask();
        await client.ConnectAsync(new IPEndPoint(IPAddress.Parse(TwoPathTopology.ServerV4), port), cts.Token);
        using var accepted = await accept.WaitAsync(Timeout);

        Assert.That(((IPEndPoint)accepted.RemoteEndPoint!).Address, Is.EqualTo(IPAddress.Parse(TwoPathTopology.ClientPath1V4)));

        // The runner's own namespace does not have the address.
        using var outside = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        Assert.That(() => outside.Bind(new IPEndPoint(IPAddress.Parse(TwoPathTopology.ServerV4), 0)),
            Throws.InstanceOf<SocketException>().With.Property(nameof(SocketException.SocketErrorCode)).EqualTo(SocketError.AddressNotAvailable));
    }

    [Test]
    public async Task RunInNamespace_ThreadAfterwards_IsBackInOriginalNamespace()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("inner").WaitAsync(Timeout);
        var own = File.ResolveLinkTarget("/proc/thread-self/ns/net", false)!.ToString();
        var inside = await ns.RunInNamespaceAsync(() => File.ResolveLinkTarget("/proc/thread-self/ns/net", false)!.ToString()).WaitAsync(Timeout);

        Assert.That(inside, Is.Not.EqualTo(own));
        Assert.That(File.ResolveLinkTarget("/proc/thread-self/ns/net", false)!.ToString(), Is.EqualTo(own));
    }

    [Test]
    public async Task StartProcess_Stop_KillsTheWholeProcessGroup()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("proc").WaitAsync(Timeout);
        var p = ns.StartProcess("sh", ["-c", "sleep 60 & echo child $!; wait"]);
        await p.WaitForOutputAsync("child ", Timeout);
        var childPid = int.Parse(p.Output.Split("child ")[1].Trim(), System.Globalization.CultureInfo.InvariantCulture);

        Assert.That(Directory.Exists($"/proc/{childPid}"), Is.True);
        await p.StopAsync(TimeSpan.FromSeconds(5)).WaitAsync(Timeout);

        Assert.That(p.HasExited, Is.True);
        await WaitUntilAsync(() => !Directory.Exists($"/proc/{childPid}"), Timeout);
    }

    [Test]
    public async Task RunAsync_CommandOutlivesTimeout_ThrowsLabException()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("slow").WaitAsync(Timeout);
        var started = System.Diagnostics.Stopwatch.StartNew();

        Assert.That(async () => await ns.RunAsync("sleep", ["30"], TimeSpan.FromMilliseconds(300)).WaitAsync(Timeout), Throws.InstanceOf<LabException>());
        Assert.That(started.Elapsed, Is.LessThan(TimeSpan.FromSeconds(10)));
    }

    [Test]
    public async Task StartCapture_ConnectionsAcrossLink_PcapHoldsTheirSyns()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var t = await TwoPathTopology.BuildAsync(lab).WaitAsync(Timeout);
        var pcap = Path.Combine(Path.GetTempPath(), $"{t.Proxy.Name}-cap.pcap");
        try
        {
            await using var capture = await t.Proxy.StartCaptureAsync(TwoPathTopology.ProxyUp, pcap, "tcp").WaitAsync(Timeout);
            for (var i = 0; i < 3; i++)
            {
                await ConnectOnceAsync(t.Client, TwoPathTopology.ClientPath1V4, t.Server, TwoPathTopology.ServerV4).WaitAsync(Timeout);
            }

            var packets = await capture.StopAsync().WaitAsync(Timeout);

            // IPv4, protocol TCP, flags byte exactly SYN.
            var syns = packets.Count(p => p.IpPacket.Length >= 40 && p.IpPacket.Span[9] == 6 && p.IpPacket.Span[33] == 0x02);
            Assert.That(syns, Is.EqualTo(3), capture.Log);
        }
        finally
        {
            File.Delete(pcap);
        }
    }

    [Test]
    public async Task SetRateLimit_HtbAndTbf_InstallTheQdisc()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var t = await TwoPathTopology.BuildAsync(lab).WaitAsync(Timeout);

        await t.Client.SetRateLimitAsync(TwoPathTopology.ClientPath1, "50mbit").WaitAsync(Timeout);
        await t.Client.SetRateLimitAsync(TwoPathTopology.ClientPath2, "50mbit", RateShaper.Tbf).WaitAsync(Timeout);

        Assert.That(await LabCommand.CheckAsync("tc", ["-n", t.Client.Name, "class", "show", "dev", TwoPathTopology.ClientPath1]).WaitAsync(Timeout),
            Does.Contain("rate 50Mbit"));
        Assert.That(await LabCommand.CheckAsync("tc", ["-n", t.Client.Name, "qdisc", "show", "dev", TwoPathTopology.ClientPath2]).WaitAsync(Timeout),
            Does.Contain("tbf").And.Contain("rate 50Mbit"));
    }

    [Test]
    public async Task Dispose_RemovesNamespacesAndStopsProcesses()
    {
        var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("gone").WaitAsync(Timeout);
        var p = ns.StartProcess("sleep", ["60"]);
        await lab.DisposeAsync();

        Assert.That(p.HasExited, Is.True);
        Assert.That(await LabRun.ListNamespacesAsync().WaitAsync(Timeout), Does.Not.Contain(ns.Name));
    }

    [Test]
    public async Task SweepStale_DeadCreator_RemovedAndLiveCreatorKept()
    {
        using var dead = System.Diagnostics.Process.Start("true")!;
        await dead.WaitForExitAsync().WaitAsync(Timeout);
        var stale = $"ps0badc0-{dead.Id}-1stale";
        var live = $"ps0badc0-{Environment.ProcessId}-1live";
        try
        {
            await LabCommand.CheckAsync("ip", ["netns", "add", stale]).WaitAsync(Timeout);
            await LabCommand.CheckAsync("ip", ["netns", "add", live]).WaitAsync(Timeout);

            await LabRun.SweepStaleAsync().WaitAsync(Timeout);

            var names = await LabRun.ListNamespacesAsync().WaitAsync(Timeout);
            Assert.That(names, Does.Not.Contain(stale));
            Assert.That(names, Does.Contain(live));
        }
        finally
        {
            await LabCommand.RunAsync("ip", ["netns", "delete", stale]).WaitAsync(Timeout);
            await LabCommand.RunAsync("ip", ["netns", "delete", live]).WaitAsync(Timeout);
        }
    }

    /// <summary>One TCP connection from <paramref name="source"/> in <paramref name="from"/> to a fresh listener on
    /// <paramref name="target"/> in <paramref name="to"/>; returns the peer address the listener saw.</summary>
    internal static async Task<IPAddress> ConnectOnceAsync(NetNamespace from, string source, NetNamespace to, string target)
    {
        var targetAddress = IPAddress.Parse(target);
        using var listener = await to.RunInNamespaceAsync(() =>
        {
            var l = new Socket(targetAddress.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            l.Bind(new IPEndPoint(targetAddress, 0));
            l.Listen();
            return l;
        }).WaitAsync(Timeout);
        using var client = await from.RunInNamespaceAsync(() =>
        {
            var c = new Socket(targetAddress.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            c.Bind(new IPEndPoint(IPAddress.Parse(source), 0));
            return c;
        }).WaitAsync(Timeout);
        using var cts = new CancellationTokenSource(Timeout);
        var accept = listener.AcceptAsync(cts.Token).AsTask();
        await client.ConnectAsync(listener.LocalEndPoint!, cts.Token);
        using var accepted = await accept.WaitAsync(Timeout);
        return ((IPEndPoint)accepted.RemoteEndPoint!).Address;
    }

    internal static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (deadline.Elapsed > timeout)
            {
                Assert.Fail($"condition not met within {timeout}");
            }

            await Task.Delay(20);
        }
    }
}
