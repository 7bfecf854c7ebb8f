using ProxySelection.LabTool.Lab;

namespace ProxySelection.IntegrationTests.Demo;

/// <summary>How the demo finds and installs missing Debian packages (apt-get replaced by a script that records its calls).</summary>
[TestFixture]
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class PrerequisitesTests
{
    [Test]
    public void Missing_ToolsNowhere_NamesEveryPackageOnce()
    {
        var empty = Directory.CreateTempSubdirectory("psel-empty-path-");
        try
        {
            Assert.That(Prerequisites.Missing([empty.FullName]),
                Is.EqualTo(new[] { "iproute2", "iptables", "tcpdump", "mptcpize", "nginx-light", "curl", "iperf3", "ethtool", "util-linux" }));
        }
        finally
        {
            empty.Delete();
        }
    }

    [Test]
    public void Missing_OnThisMachine_None()
    {
        Assert.That(Prerequisites.Missing(Prerequisites.SearchPath()), Is.Empty);
    }

    [Test]
    public void Install_AptSucceeds_UpdatesFirstThenInstallsNonInteractively()
    {
        var dir = Directory.CreateTempSubdirectory("psel-fake-apt-");
        try
        {
            var calls = Path.Combine(dir.FullName, "calls");
            var apt = FakeApt(dir.FullName, $"echo \"$DEBIAN_FRONTEND $*\" >> {calls}; echo working; exit 0");
            using var log = new StringWriter();

            bool ok = Prerequisites.Install(["curl", "tcpdump"], log, TimeSpan.FromSeconds(20), apt, "apt-cache");

            Assert.That(ok, Is.True, log.ToString());
            Assert.That(File.ReadAllLines(calls), Is.EqualTo(new[]
            {
                "noninteractive update -o DPkg::Lock::Timeout=120",
                "noninteractive install -y --no-install-recommends -o DPkg::Lock::Timeout=120 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold curl tcpdump",
            }));
            Assert.That(log.ToString(), Does.Contain("  | working"));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Test]
    public void Install_UpdateFailsInstallSucceeds_Installed()
    {
        var dir = Directory.CreateTempSubdirectory("psel-fake-apt-");
        try
        {
            // A broken third-party repository: update exits 100, Debian's own packages still install.
            var apt = FakeApt(dir.FullName, "if [ \"$1\" = update ]; then echo 'E: Some index files failed to download'; exit 100; fi; exit 0");
            using var log = new StringWriter();

            bool ok = Prerequisites.Install(["curl"], log, TimeSpan.FromSeconds(20), apt);

            Assert.That(ok, Is.True, log.ToString());
            Assert.That(log.ToString(), Does.Contain("trying the install with the package lists this machine has"));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Test]
    public void Install_NginxLightNotAvailable_InstallsNginx()
    {
        var dir = Directory.CreateTempSubdirectory("psel-fake-apt-");
        try
        {
            var calls = Path.Combine(dir.FullName, "calls");
            var apt = FakeApt(dir.FullName, $"echo \"$*\" >> {calls}; exit 0");
            var cache = Path.Combine(dir.FullName, "apt-cache");
            File.WriteAllText(cache, "#!/bin/sh\necho \"$2:\"\necho \"  Installed: (none)\"\necho \"  Candidate: (none)\"\n");
            File.SetUnixFileMode(cache, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            using var log = new StringWriter();

            bool ok = Prerequisites.Install(["nginx-light", "curl"], log, TimeSpan.FromSeconds(20), apt, cache);

            Assert.That(ok, Is.True, log.ToString());
            Assert.That(File.ReadAllLines(calls).Last(), Does.EndWith("--force-confold nginx curl"));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Test]
    public void Install_UpdateAndInstallFail_TriesInstallAnywayAndSaysBoth()
    {
        var dir = Directory.CreateTempSubdirectory("psel-fake-apt-");
        try
        {
            var calls = Path.Combine(dir.FullName, "calls");
            var apt = FakeApt(dir.FullName, $"echo \"$1\" >> {calls}; exit 100");
            using var log = new StringWriter();

            bool ok = Prerequisites.Install(["curl"], log, TimeSpan.FromSeconds(20), apt);

            Assert.That(ok, Is.False);
            Assert.That(File.ReadAllLines(calls), Is.EqualTo(new[] { "update", "install" }));
            Assert.That(log.ToString(), Does.Contain("apt-get update failed (exit code 100)"));
            Assert.That(log.ToString(), Does.Contain("apt-get install failed (exit code 100)"));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static string FakeApt(string directory, string body)
    {
        var path = Path.Combine(directory, "apt-get");
        File.WriteAllText(path, $"#!/bin/sh\n{body}\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }
}
