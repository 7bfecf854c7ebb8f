using ProxySelection.IntegrationTests.Proxy;

namespace ProxySelection.IntegrationTests.Hosting;

/// <summary>Issue 6: SIGHUP changes the policy without dropping a held connection; a change that needs a restart is refused.</summary>
[TestFixture]
[NonParallelizable]
public sealed class ReloadTests
{
    private const int SigHup = 1;

    [Test]
    public async Task Sighup_PolicyChangedMidTransfer_HeldConnectionCompletesAndProxyKeepsProxying()
    {
        await using var held = await HeldTransfer.PrepareAsync();
        await held.StartAsync("""{ "Ports": [80], "Policy": "first" }""", "4M", TimeSpan.FromSeconds(60));
        var proxy = held.Proxy;
        await File.WriteAllTextAsync(held.ConfigPath, """{ "Proxy": { "Ports": [80], "Policy": "priority", "Priority": 12, "ProbeTimeout": "300ms" } }""");
        var reloaded = await held.SignalAsync(SigHup, "proxysel: reload", "");
        await File.WriteAllTextAsync(held.ConfigPath, """{ "Proxy": { "Ports": [80, 443], "Policy": "first" } }""");
        var refused = await held.SignalAsync(SigHup, "proxysel: reload refused", "");
        bool heldThroughReloads = !held.TransferCompleted && ProxyLab.Lines(proxy, "relay ").Count == 0;

        var curl = await held.TransferAsync();
        var (after, afterSha) = await held.FetchSmallAsync();
        await ProxyLab.WaitForLineAsync(proxy, "relay ", "up=82 down=16");
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        var bigRelay = ProxyLab.Lines(proxy, "relay ").Where(l => l.Contains($" down={HeldTransfer.Size + 248} ", StringComparison.Ordinal)).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(heldThroughReloads, Is.True, "both reloads happened while the transfer was held");
            Assert.That(bigRelay, Has.Count.EqualTo(1), "the held transfer was relayed to its end");
            Assert.That(reloaded, Is.EqualTo("proxysel: reloaded policy=Priority priority=12 probe_timeout=300ms drain_timeout=10s"));
            Assert.That(refused, Is.EqualTo("proxysel: reload refused; these keys only change with a restart: Proxy:Ports"));
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(ProxyLab.Sha256Of(held.Output), Is.EqualTo(held.Sha), "the held connection survived both reloads");
            Assert.That(after.ExitCode, Is.Zero, after.StdErr);
            Assert.That(afterSha, Is.EqualTo(held.SmallSha));
            Assert.That(ProxyLab.Lines(proxy, "relay "), Has.Count.EqualTo(2).And.All.Contains(": Completed "));
            Assert.That(ProxyLab.Counter(proxy, "intercepted") + ProxyLab.Counter(proxy, "kernel_intercepted"), Is.EqualTo(2),
                "the proxy still holds new connections after the reloads (the second a cache hit the kernel may intercept)");
        });
    }

    /// <summary>
    /// A daemon whose parent ignored SIGHUP (nohup) never sees one: the runtime keeps an inherited "ignore". It says so
    /// at start, and <c>proxysel reload</c> does the same reload through the control socket (exit 2 when refused).
    /// </summary>
    [Test]
    public async Task StartedWithSighupIgnored_SaysSoAtStart_AndProxyselReloadAppliesOrRefusesTheConfiguration()
    {
        await using var lab = await ProxyLab.StartAsync();
        var config = Path.Combine(lab.Directory, "proxysel.json");
        await File.WriteAllTextAsync(config, """{ "Proxy": { "Ports": [80], "Policy": "first" } }""");
        var proxy = await lab.Topology.Proxy.StartProcess("nohup", ["dotnet", ProxyLab.ProxyselDll, "run", "--config", config]).WaitRunningAsync();

        await File.WriteAllTextAsync(config, """{ "Proxy": { "Ports": [80], "Policy": "priority", "Priority": 12, "ProbeTimeout": "300ms" } }""");
        var applied = await lab.Topology.Proxy.RunAsync("dotnet", [ProxyLab.ProxyselDll, "reload"], ProxyLab.Timeout);
        await File.WriteAllTextAsync(config, """{ "Proxy": { "Ports": [80, 443], "Policy": "first" } }""");
        var refused = await lab.Topology.Proxy.RunAsync("dotnet", [ProxyLab.ProxyselDll, "reload"], ProxyLab.Timeout);
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        Assert.Multiple(() =>
        {
            Assert.That(ProxyLab.Lines(proxy, "proxysel: SIGHUP is ignored"), Has.Count.EqualTo(1), "the start says SIGHUP will not reload");
            Assert.That(applied.ExitCode, Is.Zero, applied.StdErr);
            Assert.That(applied.StdOut.Trim(), Is.EqualTo("proxysel: reloaded policy=Priority priority=12 probe_timeout=300ms drain_timeout=10s"));
            Assert.That(refused.ExitCode, Is.EqualTo(2), "a refused reload is a configuration error");
            Assert.That(refused.StdOut.Trim(), Is.EqualTo("proxysel: reload refused; these keys only change with a restart: Proxy:Ports"));
            Assert.That(ProxyLab.Lines(proxy, "proxysel: reload"), Has.Count.EqualTo(2), "the daemon logged both outcomes");
        });
    }
}
