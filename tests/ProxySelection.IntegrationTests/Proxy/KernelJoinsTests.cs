using ProxySelection.Interception.Bpf;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// <c>Proxy:KernelJoins</c> on the real kernel (issue 13, "cache hits never reach user space"): a 2-path MPTCP client
/// downloads through the proxy holding its connection toward a TCP-only server; the second subflow's MP_JOIN goes to the
/// listener in raw PREROUTING (the token its SYN/ACK handed out is in the kernel's map) and never crosses the queue.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class KernelJoinsTests
{
    // Paced by nginx (about 1.5 s): an unpaced download can end before the client's join reaches the holder, and the relay
    // line's subflows= is then 1 (ProxyDownloadTests).
    private const int Size = ProxyLab.PacedBytesPerSecond * 3 / 2;

    [Test]
    public async Task TwoPathDownloadThroughTheHolder_SecondSubflowJoinsInTheKernel_NotQueued_DownloadIntact()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", Size);
        await lab.StartNginxAsync();
        var proxy = await lab.StartProxyAsync([.. ProxyLab.KernelPath, "--set", "Proxy:KernelJoins=true"]);
        Assert.That(proxy.Output, Does.Contain("kernel joins on"), "the kernel took the join match");

        var output = Path.Combine(lab.Directory, "file.out");
        var download = await lab.CurlAsync(ProxyLab.Url(false, ProxyLab.Paced + "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(120));
        var relay = await ProxyLab.WaitForLineAsync(proxy, "relay ", "Completed");
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        Assert.Multiple(() =>
        {
            Assert.That(download.ExitCode, Is.Zero, download.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
            Assert.That(relay, Does.Contain("subflows=2"), "the client got its second subflow through the holder");
            Assert.That(ProxyLab.Counter(proxy, "joins_kernel"), Is.GreaterThanOrEqualTo(1), "the kernel took the join");
            Assert.That(ProxyLab.Counter(proxy, "joins_intercepted") + ProxyLab.Counter(proxy, "joins_passed"), Is.Zero,
                "no join reached the queue");
            Assert.That(ProxyLab.Lines(proxy, "syn ").Where(l => l.Contains("MpJoin", StringComparison.Ordinal)), Is.Empty,
                "no join decision in the engine's events");
            Assert.That(ProxyLab.Counter(proxy, "kernel_signed_synacks"), Is.GreaterThanOrEqualTo(1), "the first subflow's SYN/ACK was signed");
            Assert.That(ProxyLab.Counter(proxy, "kernel_sign_no_room"), Is.Zero,
                "the join's SYN/ACK carries no MP_PROXY, so it is not counted as a signature without room");
        });
    }

    /// <summary>
    /// A connection the proxy passes (its server speaks MPTCP): the client's join carries the server's token, which is not
    /// in the map, so the raw table passes it (the foreign match) and the engine never sees it.
    /// </summary>
    [Test]
    public async Task TwoPathDownloadFromAnMptcpServer_SecondSubflowsJoinPassedInTheKernel_NotQueued_DownloadIntact()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", Size);
        await lab.StartNginxAsync(mptcp: true);
        var proxy = await lab.StartProxyAsync([.. ProxyLab.KernelPath, "--set", "Proxy:KernelJoins=true"]);
        Assert.That(proxy.Output, Does.Contain("MP_JOINs for tokens not this proxy's pass in the kernel"));
        var rules = await lab.Topology.Proxy.RunAsync("iptables-save", ["-t", "raw"], ProxyLab.Timeout);

        var output = Path.Combine(lab.Directory, "file.out");
        var download = await lab.CurlAsync(ProxyLab.Url(false, ProxyLab.Paced + "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(120));
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        Assert.Multiple(() =>
        {
            Assert.That(rules.StdOut, Does.Contain("/foreign/proxysel-"), "the raw table's foreign-join rule");
            Assert.That(download.ExitCode, Is.Zero, download.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
            Assert.That(ProxyLab.Counter(proxy, "intercepted") + ProxyLab.Counter(proxy, "kernel_intercepted"), Is.Zero, "the connection was passed");
            Assert.That(ProxyLab.Counter(proxy, "joins_passed_kernel"), Is.GreaterThanOrEqualTo(1), "the kernel passed the join");
            Assert.That(ProxyLab.Counter(proxy, "joins_passed") + ProxyLab.Counter(proxy, "joins_intercepted") + ProxyLab.Counter(proxy, "joins_kernel"), Is.Zero,
                "no join reached the queue or the listener");
            Assert.That(ProxyLab.Lines(proxy, "syn ").Where(l => l.Contains("MpJoin", StringComparison.Ordinal)), Is.Empty,
                "no join decision in the engine's events");
        });
    }

    /// <summary>
    /// An interface that comes up after the start may have sent a SYN/ACK of the listener before the egress program was
    /// on it, so the map may lack a token: the foreign match closes, and a passed connection's join crosses the queue,
    /// where the engine passes it (it reopens after <see cref="Engine.Kernel.KernelSigning.HandshakeAge"/>).
    /// </summary>
    [Test]
    public async Task InterfaceComesUpAfterTheStart_ForeignMatchCloses_PassedConnectionsJoinDecidedByTheEngine()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", Size);
        await lab.StartNginxAsync(mptcp: true);
        var proxy = await lab.StartProxyAsync([.. ProxyLab.KernelPath, "--set", "Proxy:KernelJoins=true"]);
        var added = await lab.Topology.Proxy.RunAsync("sh", ["-c", "ip link add late0 type veth peer name late1 && ip link set late0 up"], ProxyLab.Timeout);
        Assert.That(added.ExitCode, Is.Zero, added.StdErr);
        await proxy.WaitForOutputAsync("the join map may lack a token (an interface came up", ProxyLab.Timeout);

        var output = Path.Combine(lab.Directory, "file.out");
        var download = await lab.CurlAsync(ProxyLab.Url(false, ProxyLab.Paced + "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(120));
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        Assert.Multiple(() =>
        {
            Assert.That(download.ExitCode, Is.Zero, download.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
            Assert.That(ProxyLab.Counter(proxy, "joins_passed_kernel"), Is.Zero, "the closed match passed nothing");
            Assert.That(ProxyLab.Counter(proxy, "joins_passed"), Is.GreaterThanOrEqualTo(1), "the engine passed the join");
        });
    }

    [Test]
    public async Task KernelJoinsDaemonKilled_NoJoinRuleAndNoPinLeftAfterCleanup()
    {
        await using var lab = await ProxyLab.StartAsync();
        await lab.StartNginxAsync();
        var proxy = await lab.StartProxyAsync([.. ProxyLab.KernelPath, "--set", "Proxy:KernelJoins=true"]);
        var pin = PinOf(proxy.Output);
        var rules = await lab.Topology.Proxy.RunAsync("iptables-save", ["-t", "raw"], ProxyLab.Timeout);
        Assert.That(rules.StdOut, Does.Contain($"--object-pinned {pin}"), "the raw table's join match");

        await proxy.StopAsync(ProxyLab.Timeout, LabNative.SigKill);
        var cleanup = await lab.CleanupAsync();
        Assert.That(cleanup.ExitCode, Is.Zero, cleanup.StdErr);
        var after = await lab.Topology.Proxy.RunAsync("iptables-save", ["-t", "raw"], ProxyLab.Timeout);
        var pins = await lab.Topology.Proxy.RunAsync("ls", ["-1R", Path.GetDirectoryName(pin)!], ProxyLab.Timeout);
        Assert.Multiple(() =>
        {
            Assert.That(after.StdOut, Does.Not.Contain("object-pinned"), "cleanup removed the rule");
            // Under ip netns exec the daemon's bpf mount was its own mount namespace's, gone with it; a daemon in the host's
            // mount namespace leaves the pin, which cleanup removes (KernelSigner.CleanupJoinPins: a dead pid's only).
            Assert.That(pins.StdOut, Does.Not.Contain(Path.GetFileName(pin)), "no pin left (the join match's, nor the foreign one's below)");
        });
    }

    /// <summary>
    /// Where /sys/fs/bpf is a bpf file system (a systemd host), the match is pinned there and the daemon mounts nothing:
    /// the sample unit grants no CAP_SYS_ADMIN, which a mount of its own needs. Mounted here in the daemon's own mount
    /// namespace (ip netns exec gives it one, with a fresh /sys), so the host's stays untouched.
    /// </summary>
    [Test]
    public async Task HostBpfFileSystemMounted_MatchPinnedThere_AndTheJoinStillTakenInTheKernel()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", Size);
        await lab.StartNginxAsync();
        string daemon = string.Join(' ', new[] { "exec", "dotnet", ProxyLab.ProxyselDll, "run", "--ports", "80" }.Concat(ProxyLab.KernelPath).Select(a => $"'{a}'"));
        var proxy = lab.Topology.Proxy.StartProcess("sh", ["-c", $"mount -t bpf bpf /sys/fs/bpf && {daemon}"]);
        await proxy.WaitForOutputAsync("proxysel: running", ProxyLab.Timeout);
        var pin = PinOf(proxy.Output);

        var output = Path.Combine(lab.Directory, "file.out");
        var download = await lab.CurlAsync(ProxyLab.Url(false, ProxyLab.Paced + "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(120));
        // Started without an event file, the daemon writes no relay line: its stop line (after the drain) has the counters.
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        Assert.Multiple(() =>
        {
            Assert.That(pin, Does.StartWith(KernelJoinTokens.HostPinDirectory + "/proxysel-"), "pinned on the host's bpf file system");
            Assert.That(download.ExitCode, Is.Zero, download.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
            Assert.That(ProxyLab.Counter(proxy, "relayed"), Is.EqualTo(1), "the proxy held the download");
            Assert.That(ProxyLab.Counter(proxy, "joins_kernel"), Is.GreaterThanOrEqualTo(1), "the kernel took the join through that pin");
        });
    }

    private static string PinOf(string output)
    {
        const string Marker = "(match ";
        int at = output.IndexOf(Marker, StringComparison.Ordinal);
        Assert.That(at, Is.GreaterThanOrEqualTo(0), output);
        return output[(at + Marker.Length)..output.IndexOf(';', at)];
    }
}
