using System.Net.Sockets;
using System.Text;
using ProxySelection.IntegrationTests.Proxy;

namespace ProxySelection.IntegrationTests.Hosting;

/// <summary>Issue 6: under a service manager (NOTIFY_SOCKET set) the daemon reports READY=1 once its rules are in, STOPPING=1 on SIGTERM.</summary>
[TestFixture]
[NonParallelizable]
public sealed class SystemdNotifyTests
{
    private const int SigTerm = 15;

    [Test]
    public async Task NotifySocket_StartAndSigterm_ReadyAfterRunningThenStopping()
    {
        await using var lab = await ProxyLab.StartAsync();
        var path = Path.Combine(lab.Directory, "notify.sock");
        // What systemd listens on: a unix datagram socket named in NOTIFY_SOCKET.
        using var notify = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        notify.Bind(new UnixDomainSocketEndPoint(path));
        var proxy = lab.Topology.Proxy.StartProcess("env",
            ["NOTIFY_SOCKET=" + path, "dotnet", ProxyLab.ProxyselDll, "run", "--ports", "80", "--set", "Proxy:ControlSocket=none"]);

        var ready = await ReceiveAsync(notify);
        var rulesWhenReady = await lab.Topology.Proxy.CheckAsync("iptables-save", [], ProxyLab.Timeout);
        // The console logger writes from its own thread: the line may trail the datagram by a moment.
        var running = await ProxyLab.WaitForLineAsync(proxy, "proxysel: running", "");
        Assert.That(proxy.Signal(SigTerm), Is.True);
        var stopping = await ReceiveAsync(notify);
        await proxy.WaitForExitAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        Assert.Multiple(() =>
        {
            Assert.That(ready, Is.EqualTo("READY=1"));
            Assert.That(running, Does.StartWith("proxysel: running role=Downgrade"));
            Assert.That(rulesWhenReady, Does.Contain("PSEL"), "READY=1 comes once the rules are in");
            Assert.That(stopping, Is.EqualTo("STOPPING=1"));
            Assert.That(proxy.ExitCode, Is.Zero);
            Assert.That(ProxyLab.Lines(proxy, "proxysel: stopped, rules removed"), Has.Count.EqualTo(1));
        });
    }

    private static async Task<string> ReceiveAsync(Socket socket)
    {
        var buffer = new byte[512];
        using var timeout = new CancellationTokenSource(ProxyLab.Timeout);
        int read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
        return Encoding.UTF8.GetString(buffer, 0, read).Trim();
    }
}
