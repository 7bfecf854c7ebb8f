using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>The other role and the fail-open hook, end to end.</summary>
[TestFixture]
[NonParallelizable]
public sealed class ProxyRoleTests
{
    /// <summary>Upgrade role (home router): a plain TCP client, an MPTCP server; the proxy terminates TCP and the probe becomes the MPTCP upstream leg.</summary>
    [Test]
    public async Task UpgradeRole_TcpClientToMptcpServer_ProxyTerminatesTcpAndCarriesItOverMptcp()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", 4 * 1024 * 1024);
        await lab.StartNginxAsync(mptcp: true);
        var proxy = await lab.StartProxyAsync("--role", "upgrade");

        var output = Path.Combine(lab.Directory, "file.out");
        var curl = await lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: false, output);

        Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
        Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
        var relay = await ProxyLab.WaitForLineAsync(proxy, "relay ", "Completed");
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);
        Assert.Multiple(() =>
        {
            Assert.That(relay, Does.Contain("client=NotMptcp"));
            Assert.That(relay, Does.Contain("upstream=Active"), "the upstream leg runs MPTCP");
            Assert.That(ProxyLab.Counter(proxy, "probes_adopted"), Is.EqualTo(1));
            Assert.That(ProxyLab.Counter(proxy, "intercepted"), Is.EqualTo(1));
        });
    }

    /// <summary>
    /// The per-packet path fails: another program holds port 80 in the proxy's namespace, so the transparent listener
    /// cannot open. The SYN is accepted untouched (counted) and the client reaches the server as if no proxy were there.
    /// </summary>
    [Test]
    public async Task ListenerCannotOpen_HookFailsOpen_ConnectionsPassUntouched()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("small.bin", 16 * 1024);
        await lab.StartNginxAsync();
        var squatter = lab.Topology.Proxy.StartProcess("python3", ["-c", "import socket,time; s=socket.socket(); s.bind(('0.0.0.0', 80)); s.listen(); print('bound', flush=True); time.sleep(60)"]);
        await squatter.WaitForOutputAsync("bound", ProxyLab.Timeout);
        var proxy = await lab.StartProxyAsync();

        for (int i = 0; i < 2; i++)
        {
            var output = Path.Combine(lab.Directory, $"small{i}.out");
            var curl = await lab.CurlAsync(ProxyLab.Url(false, "small.bin"), mptcp: true, output);
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
        }

        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);
        Assert.Multiple(() =>
        {
            Assert.That(ProxyLab.Counter(proxy, "hook_failures"), Is.EqualTo(2), "the probe's verdict and the cached intercept both failed");
            Assert.That(ProxyLab.Counter(proxy, "intercepted"), Is.Zero);
            Assert.That(ProxyLab.Counter(proxy, "probes_adopted"), Is.Zero, "the probe was closed, not adopted");
            Assert.That(ProxyLab.Counter(proxy, "relayed"), Is.Zero);
        });
    }
}
