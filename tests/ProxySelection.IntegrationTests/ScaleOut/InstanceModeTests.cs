using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.ScaleOut;

/// <summary>
/// Proxy:Instance on the real kernel, one daemon in a namespace of its own: the C flag sysctl is set while it runs and
/// the value found is back after SIGTERM; the routing engine's withdraw runs first at the stop, while the announced
/// address is still there; a namespace whose sysctl cannot be written refuses the start with exit 3 and one line.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class InstanceModeTests
{
    private const string Sysctl = "net.mptcp.allow_join_initial_addr_port";
    private const string Unicast = "198.18.77.1";
    private static readonly TimeSpan Timeout = ProxyLab.Timeout;

    [Test]
    public async Task InstanceMode_SetsTheCFlagSysctlWhileRunning_RestoresItAfterSigterm_AndWithdrawsTheRouteBeforeTheAddress()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await InstanceNamespaceAsync(lab, "inst");
        var directory = Directory.CreateTempSubdirectory("psel-instance-").FullName;
        var routing = Path.Combine(directory, "routing.log");
        try
        {
            // The withdraw command records how many MPTCP endpoints exist when it runs: the announced one must still be there.
            var proxy = await ProxyLab.StartProxyInAsync(ns, Instance(routing));
            await proxy.WaitForOutputAsync("service address announced", Timeout);
            var during = await ns.ReadSysctlAsync(Sysctl);
            await proxy.StopAsync(Timeout);
            var output = proxy.Output;
            var after = await ns.ReadSysctlAsync(Sysctl);
            var endpoints = (await ns.CheckAsync("ip", ["-j", "mptcp", "endpoint", "show"], Timeout)).Trim();
            TestContext.Progress.WriteLine(output);

            Assert.Multiple(() =>
            {
                Assert.That(during, Is.EqualTo("0"), "the C flag while the instance runs");
                Assert.That(after, Is.EqualTo("1"), "the value found at start, back after the stop");
                Assert.That(proxy.ExitCode, Is.Zero);
                Assert.That(File.ReadAllLines(routing), Is.EqualTo(new[] { "announce", "withdraw endpoints=1" }), "announced once, withdrawn once, the address still announced then");
                Assert.That(output.IndexOf("withdrawn from the routing engine", StringComparison.Ordinal), Is.GreaterThanOrEqualTo(0)
                    .And.LessThan(output.IndexOf("proxysel: withdrew 1 announced address", StringComparison.Ordinal)), "the route goes before the address");
                Assert.That(endpoints, Is.EqualTo("[]").Or.Empty, "the address is withdrawn at the end");
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>
    /// SIGKILL leaves the sysctl at 0 (nothing in the daemon runs); <c>proxysel cleanup</c> in the namespace puts back the
    /// value the daemon recorded before setting 0, says so in one line, and a second cleanup has nothing left to do.
    /// </summary>
    [Test]
    public async Task InstanceMode_KilledWithSigkill_CleanupRestoresTheSysctl_AndSaysSoInOneLine()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await InstanceNamespaceAsync(lab, "killed");
        var proxy = await ProxyLab.StartProxyInAsync(ns, Instance(null));
        var during = await ns.ReadSysctlAsync(Sysctl);
        await proxy.StopAsync(Timeout, LabNative.SigKill);
        var afterKill = await ns.ReadSysctlAsync(Sysctl);
        var cleanup = await ns.RunAsync("dotnet", [ProxyLab.ProxyselDll, "cleanup"], Timeout);
        var after = await ns.ReadSysctlAsync(Sysctl);
        var again = await ns.RunAsync("dotnet", [ProxyLab.ProxyselDll, "cleanup"], Timeout);
        TestContext.Progress.WriteLine($"cleanup: {cleanup.StdOut}{cleanup.StdErr}");

        Assert.Multiple(() =>
        {
            Assert.That(during, Is.EqualTo("0"));
            Assert.That(afterKill, Is.EqualTo("0"), "a killed daemon restores nothing");
            Assert.That(cleanup.ExitCode, Is.Zero, cleanup.StdErr);
            Assert.That(cleanup.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.Contains(Sysctl, StringComparison.Ordinal)),
                Is.EqualTo(new[] { $"cleanup: {Sysctl} back to 1, the value instance mode replaced" }));
            Assert.That(after, Is.EqualTo("1"), "the value found at start, back after cleanup");
            Assert.That(again.ExitCode, Is.Zero, again.StdErr);
            Assert.That(again.StdOut, Does.Not.Contain(Sysctl), "nothing recorded any more");
        });
    }

    /// <summary>The JSON <c>started</c> event (<c>--events</c>) and <c>status</c> (JSON and text) name the instance by its service.instance.id.</summary>
    [Test]
    public async Task InstanceMode_StartedEventAndStatus_CarryTheInstanceId()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await InstanceNamespaceAsync(lab, "named");
        var directory = Directory.CreateTempSubdirectory("psel-instance-").FullName;
        var socket = Path.Combine(directory, "control.sock");
        try
        {
            var proxy = await ProxyLab.StartProxyInAsync(ns, Instance(null, socket));
            var json = await ns.RunAsync("dotnet", [ProxyLab.ProxyselDll, "status", "--socket", socket, "--json"], Timeout);
            var text = await ns.RunAsync("dotnet", [ProxyLab.ProxyselDll, "status", "--socket", socket], Timeout);
            await proxy.StopAsync(Timeout);
            var started = ProxyLab.Events(proxy, "started");
            TestContext.Progress.WriteLine($"{json.StdOut}\n{text.StdOut}");
            var status = System.Text.Json.Nodes.JsonNode.Parse(json.StdOut)!;

            Assert.Multiple(() =>
            {
                Assert.That(started.Select(e => e.InstanceId), Is.EqualTo(new[] { "test-instance" }), "one started event, with the instance id");
                Assert.That((string?)status["daemon"]!["instance_id"], Is.EqualTo("test-instance"));
                Assert.That(text.StdOut.Split('\n')[0], Does.Contain(" instance=test-instance "));
            });
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>A read-only /proc/sys (an unprivileged container's) stands in for any namespace where the sysctl cannot be set.</summary>
    [Test]
    public async Task InstanceMode_SysctlNotWritable_RefusesToStartWithExit3NamingTheSetting()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await InstanceNamespaceAsync(lab, "rofs");
        var file = "/proc/sys/net/mptcp/allow_join_initial_addr_port";
        string daemon = string.Join(' ', new[] { "exec", "dotnet", ProxyLab.ProxyselDll, "run", "--ports", "80" }.Concat(Instance(null)).Select(a => $"'{a}'"));
        // A private mount namespace: the read-only bind mount of the one file goes with the process.
        await using var process = ns.StartProcess("unshare", ["-m", "--propagation", "private", "sh", "-c",
            $"mount --bind {file} {file} && mount -o remount,bind,ro {file} && {daemon}"]);
        int code = await process.WaitForExitAsync(Timeout);
        var output = process.Output;
        var sysctl = await ns.ReadSysctlAsync(Sysctl);
        var rules = await ns.CheckAsync("iptables-save", [], Timeout);
        TestContext.Progress.WriteLine(output);

        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(3), output);
            Assert.That(output.Split('\n').Where(l => l.StartsWith("proxysel: failed to start", StringComparison.Ordinal)).ToList(),
                Has.Count.EqualTo(1).And.Some.StartsWith($"proxysel: failed to start: Proxy:Instance:Enabled: cannot set {Sysctl}=0"), output);
            Assert.That(output, Does.Not.Contain("   at "), "no stack trace without --debug");
            Assert.That(sysctl, Is.EqualTo("1"));
            Assert.That(rules, Does.Not.Contain("PSEL"), "nothing was installed");
        });
    }

    /// <summary>A namespace with the instance's unicast address on a veth of its own (this kernel has no dummy device) and the sysctl at Linux's default, 1.</summary>
    private static async Task<NetNamespace> InstanceNamespaceAsync(ProxySelection.Lab.Lab lab, string name)
    {
        var ns = await lab.AddNamespaceAsync(name);
        await ns.IpBatchAsync(["link add uplink0 type veth peer name uplink1", $"addr add {Unicast}/24 dev uplink0", "link set uplink0 up", "link set uplink1 up", "mptcp endpoint flush"]).WaitAsync(Timeout);
        await ns.SysctlAsync((Sysctl, "1"));
        return ns;
    }

    private static string[] Instance(string? routing, string controlSocket = "none") =>
    [
        "--set", $"Proxy:AnnounceAddresses={Unicast}",
        "--set", $"Proxy:ControlSocket={controlSocket}",
        "--set", "Proxy:DrainTimeout=2s",
        "--set", "Proxy:Instance:Enabled=true",
        "--set", "Proxy:Instance:Id=test-instance",
        .. routing is null ? Array.Empty<string>() :
        [
            "--set", $"Proxy:Instance:AnnounceCommand=echo announce >> {routing}",
            "--set", $"Proxy:Instance:WithdrawCommand=echo withdraw endpoints=$(ip -j mptcp endpoint show | grep -o '\"id\"' | wc -l) >> {routing}",
        ],
    ];
}
