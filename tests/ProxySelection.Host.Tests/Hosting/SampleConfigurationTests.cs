using Microsoft.Extensions.Configuration.Memory;
using ProxySelection.Host.Hosting;
using ProxySelection.Negotiation;

namespace ProxySelection.Host.Tests.Hosting;

/// <summary>Every file in samples/ loads and validates, so the samples cannot rot.</summary>
public sealed class SampleConfigurationTests
{
    public static IEnumerable<string> SampleFiles() =>
        Directory.GetFiles(RepositoryPaths.Samples, "*.json").Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal);

    [Test]
    public void Samples_AllRolesPresent() =>
        Assert.That(SampleFiles(), Is.SupersetOf(new[] { "aggregation-downgrade.json", "chain-member.json", "cpe-upgrade.json" }));

    [TestCaseSource(nameof(SampleFiles))]
    public void Sample_LoadsAndValidates(string name)
    {
        var path = Path.Combine(RepositoryPaths.Samples, name);
        // A sample names the operator key's installed path (/etc/proxysel); a generated key stands in for it.
        var key = Path.GetTempFileName();
        var users = Path.GetTempFileName();
        try
        {
            File.WriteAllText(key, Convert.ToHexString(new byte[32]));
            File.WriteAllText(users, "alice:wonderland\n");
            var text = File.ReadAllText(path);
            var usesKey = text.Contains("\"KeyFile\"", StringComparison.Ordinal);
            // Likewise the SOCKS users file of the host-configured sample.
            var usesUsers = text.Contains("\"SocksUsersFile\"", StringComparison.Ordinal);

            var result = ProxyConfiguration.Load(path, [.. usesKey ? [$"Proxy:KeyFile={key}"] : Array.Empty<string>(), .. usesUsers ? [$"Proxy:SocksUsersFile={users}"] : Array.Empty<string>()],
                new MemoryConfigurationSource());

            Assert.That(result.Errors, Is.Empty);
            var unit = File.ReadAllLines(Path.Combine(RepositoryPaths.Samples, "proxysel.service"));
            var stopSeconds = int.Parse(unit.Single(l => l.StartsWith("TimeoutStopSec=", StringComparison.Ordinal))["TimeoutStopSec=".Length..], System.Globalization.CultureInfo.InvariantCulture);
            Assert.That(TimeSpan.FromSeconds(stopSeconds), Is.GreaterThanOrEqualTo(ProxyDaemon.ShutdownTimeoutFor(result.Options!.DrainTimeout)),
                "systemd must not SIGKILL the daemon inside its own stop budget");
        }
        finally
        {
            File.Delete(key);
            File.Delete(users);
        }
    }

    [Test]
    public void ChainMemberSample_PriorityPolicyAndInstalledKeyPath()
    {
        var path = Path.Combine(RepositoryPaths.Samples, "chain-member.json");
        Assert.That(File.ReadAllText(path), Does.Contain("\"KeyFile\": \"/etc/proxysel/operator.key\""));
        var key = Path.GetTempFileName();
        try
        {
            File.WriteAllText(key, Convert.ToHexString(new byte[32]));
            var result = ProxyConfiguration.Load(path, [$"Proxy:KeyFile={key}"], new MemoryConfigurationSource());
            Assert.That(result.Options!.Policy, Is.EqualTo(SelectionPolicy.Priority));
            Assert.That(result.Options.Priority, Is.EqualTo(12));
        }
        finally
        {
            File.Delete(key);
        }
    }

    [Test]
    public void SystemdUnit_StartsFromConfigNotifiesAndCleansUp()
    {
        var unit = File.ReadAllLines(Path.Combine(RepositoryPaths.Samples, "proxysel.service"));

        Assert.That(unit, Has.Some.Match("^ExecStart=.*proxysel run --config /etc/proxysel/proxysel.json$"));
        Assert.That(unit, Has.Some.Match("^ExecStopPost=.*proxysel cleanup$"));
        Assert.That(unit, Has.Some.EqualTo("ExecReload=/bin/kill -HUP $MAINPID"));
        Assert.That(unit, Has.Some.EqualTo("AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_BPF"), "CAP_BPF for the kernel signer's programs");
        Assert.That(unit, Has.Some.EqualTo("Delegate=yes"), "the kernel signer moves the daemon into a cgroup below the unit's");
        Assert.That(unit, Has.Some.EqualTo("RestartPreventExitStatus=2 3 4 5 6 7"), "exit codes 2-7 are start failures a restart cannot fix");
        Assert.That(unit, Has.Some.EqualTo("Type=notify"), "the daemon sends READY=1 once its rules are in");
        Assert.That(unit, Has.Some.EqualTo("RuntimeDirectory=proxysel").And.Some.EqualTo("RuntimeDirectoryMode=0750"), "the control socket's folder");
    }
}
