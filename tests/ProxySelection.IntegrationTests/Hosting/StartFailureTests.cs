using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Hosting;

/// <summary>
/// Issue 15: each class of start failure provoked for real in a throw-away namespace: one line naming the setting
/// or resource, its exit code, no stack trace. And issue 15 item 4: two daemons in two namespaces with default
/// settings each get their own control socket, which <c>proxysel status</c> in that namespace reaches.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class StartFailureTests
{
    private static readonly TimeSpan Timeout = ProxyLab.Timeout;

    [Test]
    public async Task PortInUse_ListenerBoundFirst_Exit5NamingTheKey()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("pinuse");
        using var taken = await ns.RunInNamespaceAsync(() =>
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(IPAddress.Loopback, 1080));
            socket.Listen();
            return socket;
        });

        var (code, output) = await RunToExitAsync(ns, ["--mode", "socks", "--socks", "127.0.0.1:1080", "--set", "Proxy:ControlSocket=none"]);

        AssertOneLine(output, code, 5, "proxysel: failed to start: Proxy:Socks: 127.0.0.1:1080 is in use");
    }

    [Test]
    public async Task AddressNotOnThisHost_Exit4NamingTheKeyAndAddress()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("noaddr");

        var (code, output) = await RunToExitAsync(ns, ["--mode", "socks", "--socks", "198.18.99.99:1080", "--set", "Proxy:ControlSocket=none"]);

        AssertOneLine(output, code, 4, "proxysel: failed to start: Proxy:Socks: 198.18.99.99 is not an address of this host");
    }

    [Test]
    public async Task QueueTaken_SecondProxyOnTheSameQueue_Exit6NamingTheQueue()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("qtaken");
        await using var first = await ProxyLab.StartProxyInAsync(ns, "--queue", "5", "--set", "Proxy:ControlSocket=none");

        var (code, output) = await RunToExitAsync(ns, ["--ports", "81", "--queue", "5", "--chain-prefix", "PSELB", "--set", "Proxy:ControlSocket=none"]);

        AssertOneLine(output, code, 6, "proxysel: failed to start: Proxy:QueueNumber: NFQUEUE queue 5 or 6 (egress) is bound by another process");
        Assert.That(first.HasExited, Is.False, "the first proxy keeps its queue");
    }

    [Test]
    public async Task MptcpDisabled_Exit7NamingTheSysctl()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("nomptcp");
        await ns.SysctlAsync(("net.mptcp.enabled", "0"));

        var (code, output) = await RunToExitAsync(ns, ["--ports", "80", "--set", "Proxy:ControlSocket=none"]);

        AssertOneLine(output, code, 7, "proxysel: failed to start: net.mptcp.enabled=0");
        Assert.That(await ns.CheckAsync("iptables-save", [], Timeout), Does.Not.Contain("PSEL"), "nothing was installed");
    }

    [Test]
    public async Task NotRoot_Exit3NamingTheCapability()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("noroot");
        // The clone may sit in a folder only root can enter (mktemp -d is 0700): the unprivileged user runs a copy in /tmp.
        var copy = Path.Combine("/tmp", "psel-noroot-" + Guid.NewGuid().ToString("N")[..12]);
        int code;
        string output;
        try
        {
            var dll = ProxyLab.CopyDaemon(copy);
            await using var process = ns.StartProcess("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "env", "HOME=/tmp", "DOTNET_CLI_HOME=/tmp",
                "dotnet", dll, "run", "--ports", "80", "--set", "Proxy:ControlSocket=none"]);
            code = await process.WaitForExitAsync(Timeout);
            output = process.Output;
        }
        finally
        {
            Directory.Delete(copy, recursive: true);
        }

        AssertOneLine(output, code, 3, "proxysel: failed to start: not permitted");
        Assert.That(output, Does.Contain("CAP_NET_ADMIN"));
    }

    [Test]
    public async Task Debug_StartFailure_AddsTheStackTrace()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("debug");

        var (code, output) = await RunToExitAsync(ns, ["--mode", "socks", "--socks", "198.18.99.99:1080", "--set", "Proxy:ControlSocket=none", "--debug"]);

        Assert.That(code, Is.EqualTo(4), output);
        Assert.That(output, Does.Contain("   at "), "--debug prints the trace");
    }

    [Test]
    public async Task ControlSocket_TwoNamespacesDefaultSettings_EachStatusReachesItsOwn()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var a = await lab.AddNamespaceAsync("ctla");
        var b = await lab.AddNamespaceAsync("ctlb");
        await using var proxyA = await ProxyLab.StartProxyInAsync(a, "--proxy-id", "11");
        await using var proxyB = await ProxyLab.StartProxyInAsync(b, "--proxy-id", "22");
        await proxyA.WaitForOutputAsync("proxysel: control socket", Timeout);
        await proxyB.WaitForOutputAsync("proxysel: control socket", Timeout);

        var statusA = JsonNode.Parse(await a.CheckAsync("dotnet", [ProxyLab.ProxyselDll, "status", "--json"], Timeout))!;
        var statusB = JsonNode.Parse(await b.CheckAsync("dotnet", [ProxyLab.ProxyselDll, "status", "--json"], Timeout))!;

        Assert.Multiple(() =>
        {
            Assert.That(proxyA.Output + proxyB.Output, Does.Not.Contain("no control socket"));
            Assert.That((int)statusA["daemon"]!["proxy_id"]!, Is.EqualTo(11));
            Assert.That((int)statusB["daemon"]!["proxy_id"]!, Is.EqualTo(22));
        });
    }

    private static async Task<(int Code, string Output)> RunToExitAsync(NetNamespace ns, string[] args)
    {
        await using var process = ns.StartProcess("dotnet", [ProxyLab.ProxyselDll, "run", .. args]);
        int code = await process.WaitForExitAsync(Timeout);
        return (code, process.Output);
    }

    private static void AssertOneLine(string output, int code, int expected, string line)
    {
        TestContext.Progress.WriteLine(output);
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(expected), output);
            Assert.That(output.Split('\n').Where(l => l.StartsWith("proxysel: failed to start", StringComparison.Ordinal)).ToList(),
                Has.Count.EqualTo(1).And.Some.StartsWith(line), output);
            Assert.That(output, Does.Not.Contain("   at "), "no stack trace without --debug");
        });
    }
}
