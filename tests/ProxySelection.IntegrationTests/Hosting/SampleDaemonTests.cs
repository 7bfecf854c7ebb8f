using ProxySelection.IntegrationTests.Proxy;

namespace ProxySelection.IntegrationTests.Hosting;

/// <summary>Issue 6: the daemon starts from the shipped sample configurations and proxies traffic.</summary>
[TestFixture]
[NonParallelizable]
public sealed class SampleDaemonTests
{
    [TestCase("aggregation-downgrade.json", true, false)]
    [TestCase("cpe-upgrade.json", false, true)]
    [TestCase("chain-member.json", true, false)]
    public async Task Sample_StartsInNamespace_ProxiesADownload(string sample, bool clientMptcp, bool serverMptcp)
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", 1024 * 1024);
        await lab.StartNginxAsync(serverMptcp);
        var path = Path.Combine(RepositoryPaths.Samples, sample);
        // A sample that names the operator's key file gets a key of the test's: the sample's path is the deployment's.
        string[] key = [];
        if (File.ReadAllText(path).Contains("\"KeyFile\"", StringComparison.Ordinal))
        {
            var keyFile = Path.Combine(lab.Directory, "operator.key");
            await File.WriteAllTextAsync(keyFile, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
            key = ["--set", "Proxy:KeyFile=" + keyFile];
        }

        var proxy = await ProxyLab.StartProxysel(lab.Topology.Proxy, ["--config", path, .. key]).WaitRunningAsync();

        var output = Path.Combine(lab.Directory, "download.bin");
        var curl = await lab.CurlAsync(ProxyLab.Url(false, "file.bin"), clientMptcp, output);
        await ProxyLab.WaitForLineAsync(proxy, "relay ", "Completed");
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);
        var rules = await lab.Topology.Proxy.CheckAsync("iptables-save", [], ProxyLab.Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
            Assert.That(ProxyLab.Counter(proxy, "intercepted"), Is.EqualTo(1), "the proxy held the connection");
            Assert.That(proxy.ExitCode, Is.Zero);
            Assert.That(rules, Does.Not.Contain("PSEL"));
        });
    }
}
