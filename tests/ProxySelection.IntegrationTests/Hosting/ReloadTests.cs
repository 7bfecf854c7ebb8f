using ProxySelection.IntegrationTests.Proxy;

namespace ProxySelection.IntegrationTests.Hosting;

/// <summary>Issue 6: SIGHUP changes the policy without dropping a held connection; a change that needs a restart is refused.</summary>
[TestFixture]
[NonParallelizable]
public sealed class ReloadTests
{
    private const int SigHup = 1;
    private const int Size = 16 * 1024 * 1024;

    [Test]
    public async Task Sighup_PolicyChangedMidTransfer_HeldConnectionCompletesAndProxyKeepsProxying()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", Size);
        var small = lab.WriteFile("small.bin", 16 * 1024);
        await lab.StartNginxAsync();
        var config = Path.Combine(lab.Directory, "proxysel.json");
        await File.WriteAllTextAsync(config, """{ "Proxy": { "Ports": [80], "Policy": "first" } }""");
        var proxy = await ProxyLab.StartProxysel(lab.Topology.Proxy, ["--config", config]).WaitRunningAsync();

        var output = Path.Combine(lab.Directory, "download.bin");
        var transfer = lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(60), "--limit-rate", "4M");
        await ProxyLab.WaitForLineAsync(proxy, "accepted ", "token=");
        await File.WriteAllTextAsync(config, """{ "Proxy": { "Ports": [80], "Policy": "priority", "Priority": 12, "ProbeTimeout": "300ms" } }""");
        Assert.That(proxy.Signal(SigHup), Is.True);
        var reloaded = await ProxyLab.WaitForLineAsync(proxy, "proxysel: reload", "");
        await File.WriteAllTextAsync(config, """{ "Proxy": { "Ports": [80, 443], "Policy": "first" } }""");
        Assert.That(proxy.Signal(SigHup), Is.True);
        var refused = await ProxyLab.WaitForLineAsync(proxy, "proxysel: reload refused", "");
        bool heldThroughReloads = !transfer.IsCompleted && ProxyLab.Lines(proxy, "relay ").Count == 0;

        var curl = await transfer.WaitAsync(TimeSpan.FromSeconds(70));
        var after = await lab.CurlAsync(ProxyLab.Url(false, "small.bin"), mptcp: true, Path.Combine(lab.Directory, "small.out"));
        await ProxyLab.WaitForLineAsync(proxy, "relay ", "up=82 down=16");
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        var bigRelay = ProxyLab.Lines(proxy, "relay ").Where(l => l.Contains($" down={Size + 248} ", StringComparison.Ordinal)).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(heldThroughReloads, Is.True, "both reloads happened while the transfer was held");
            Assert.That(bigRelay, Has.Count.EqualTo(1), "the held transfer was relayed to its end");
            Assert.That(reloaded, Is.EqualTo("proxysel: reloaded policy=Priority priority=12 probe_timeout=300ms drain_timeout=10s"));
            Assert.That(refused, Is.EqualTo("proxysel: reload refused; these keys only change with a restart: Proxy:Ports"));
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha), "the held connection survived both reloads");
            Assert.That(after.ExitCode, Is.Zero, after.StdErr);
            Assert.That(ProxyLab.Sha256Of(Path.Combine(lab.Directory, "small.out")), Is.EqualTo(small));
            Assert.That(ProxyLab.Lines(proxy, "relay "), Has.Count.EqualTo(2).And.All.Contains(": Completed "));
            Assert.That(ProxyLab.Counter(proxy, "intercepted"), Is.EqualTo(2), "the proxy still holds new connections after the reloads");
        });
    }
}
