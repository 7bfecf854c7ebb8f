using Microsoft.Extensions.Logging.Abstractions;
using ProxySelection.Engine.Kernel;
using ProxySelection.Host.Hosting;

namespace ProxySelection.Host.Tests.Hosting;

/// <summary>
/// Instance mode's pieces without root: the sysctl against a file standing in for /proc/sys (the real one is the
/// integration tests'), the routing engine's commands through the real /bin/sh.
/// </summary>
public sealed class InstanceModeTests
{
    private string _directory = "";

    [SetUp]
    public void CreateDirectory() => _directory = Directory.CreateTempSubdirectory("psel-instance-").FullName;

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_directory, recursive: true);

    /// <summary>Where the value replaced is recorded (the daemon's is beside the announced endpoints' record in /run/proxysel).</summary>
    private string Record => Path.Combine(_directory, "run", "PSEL-1.sysctl");

    [Test]
    public void SetJoinInitialAddressOff_WritesZero_AndRestoreWritesTheValueFoundBack()
    {
        var sysctl = Path.Combine(_directory, "allow_join_initial_addr_port");
        File.WriteAllText(sysctl, "1\n");
        var mode = new InstanceMode(Enabled(), NullLogger.Instance, Record, sysctl);

        mode.SetJoinInitialAddressOff();
        var during = File.ReadAllText(sysctl).Trim();
        var recorded = File.ReadAllText(Record).Trim();
        mode.RestoreJoinInitialAddress();
        var after = File.ReadAllText(sysctl).Trim();
        File.WriteAllText(sysctl, "5\n");
        mode.RestoreJoinInitialAddress();

        Assert.Multiple(() =>
        {
            Assert.That(during, Is.EqualTo("0"));
            Assert.That(recorded, Is.EqualTo("1"), "the value found is recorded while the instance runs");
            Assert.That(after, Is.EqualTo("1"));
            Assert.That(File.Exists(Record), Is.False, "the record goes with the restore");
            Assert.That(File.ReadAllText(sysctl).Trim(), Is.EqualTo("5"), "a second restore writes nothing");
        });
    }

    [Test]
    public void RestoreJoinInitialAddress_ZeroAlreadyAtStart_LeavesZero()
    {
        var sysctl = Path.Combine(_directory, "allow_join_initial_addr_port");
        File.WriteAllText(sysctl, "0\n");
        var mode = new InstanceMode(Enabled(), NullLogger.Instance, Record, sysctl);

        mode.SetJoinInitialAddressOff();
        mode.RestoreJoinInitialAddress();

        Assert.That(File.ReadAllText(sysctl).Trim(), Is.EqualTo("0"));
    }

    [Test]
    public void SetJoinInitialAddressOff_NoSuchSysctl_KernelFeatureMissingNamingTheSetting()
    {
        var mode = new InstanceMode(Enabled(), NullLogger.Instance, Record, Path.Combine(_directory, "absent", "allow_join_initial_addr_port"));

        var e = Assert.Throws<StartFailureException>(mode.SetJoinInitialAddressOff);

        Assert.That(e!.Failure.ExitCode, Is.EqualTo(ExitCodes.KernelFeatureMissing));
        Assert.That(e.Failure.Reason, Does.StartWith("Proxy:Instance:Enabled: ").And.Contain(InstanceMode.Sysctl));
    }

    [Test]
    public void SetJoinInitialAddressOff_CannotWrite_NotPermittedNamingTheSetting()
    {
        // A directory where the file should be: neither root nor anyone else can write it, as with a read-only /proc/sys.
        var mode = new InstanceMode(Enabled(), NullLogger.Instance, Record, _directory);

        var e = Assert.Throws<StartFailureException>(mode.SetJoinInitialAddressOff);

        Assert.That(e!.Failure.ExitCode, Is.EqualTo(ExitCodes.NotPermitted));
        Assert.That(e.Failure.Reason, Does.StartWith("Proxy:Instance:Enabled: cannot set net.mptcp.allow_join_initial_addr_port=0"));
    }

    /// <summary>What <c>proxysel cleanup</c> does after a SIGKILL: the daemon never restored, the record is there.</summary>
    [Test]
    public void CleanupRestore_AfterADaemonThatNeverStopped_WritesTheRecordedValueBack_AndDeletesTheRecord()
    {
        var sysctl = Path.Combine(_directory, "allow_join_initial_addr_port");
        File.WriteAllText(sysctl, "1\n");
        new InstanceMode(Enabled(), NullLogger.Instance, Record, sysctl).SetJoinInitialAddressOff();

        var restored = JoinInitialAddressSysctl.Restore(Record, sysctl);
        var again = JoinInitialAddressSysctl.Restore(Record, sysctl);

        Assert.Multiple(() =>
        {
            Assert.That(restored, Is.EqualTo("1"));
            Assert.That(File.ReadAllText(sysctl).Trim(), Is.EqualTo("1"));
            Assert.That(File.Exists(Record), Is.False);
            Assert.That(again, Is.Null, "idempotent: nothing recorded, nothing written");
        });
    }

    /// <summary>A daemon restarted after a SIGKILL without cleanup finds 0 (the killed one's): the original value stays the one to restore.</summary>
    [Test]
    public void SetJoinInitialAddressOff_RecordLeftByAKilledRun_KeepsTheOriginalValue()
    {
        var sysctl = Path.Combine(_directory, "allow_join_initial_addr_port");
        File.WriteAllText(sysctl, "1\n");
        new InstanceMode(Enabled(), NullLogger.Instance, Record, sysctl).SetJoinInitialAddressOff();
        var restarted = new InstanceMode(Enabled(), NullLogger.Instance, Record, sysctl);

        restarted.SetJoinInitialAddressOff();
        restarted.RestoreJoinInitialAddress();

        Assert.That(File.ReadAllText(sysctl).Trim(), Is.EqualTo("1"));
    }

    [Test]
    public void SetJoinInitialAddressOff_CannotWrite_LeavesNoRecord()
    {
        var mode = new InstanceMode(Enabled(), NullLogger.Instance, Record, _directory);

        Assert.Throws<StartFailureException>(mode.SetJoinInitialAddressOff);

        Assert.That(File.Exists(Record), Is.False);
    }

    [Test]
    public async Task AnnounceAndWithdraw_RunTheCommands_WithdrawOnceHoweverOftenAsked()
    {
        var log = Path.Combine(_directory, "routing.log");
        var mode = new InstanceMode(Enabled($"echo announce >> {log}", $"echo withdraw >> {log}"), NullLogger.Instance, Record, Path.Combine(_directory, "unused"));

        await mode.AnnounceAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
        await mode.WithdrawAsync("stop").WaitAsync(TimeSpan.FromSeconds(30));
        await mode.WithdrawAsync("stop").WaitAsync(TimeSpan.FromSeconds(30));

        Assert.That(File.ReadAllLines(log), Is.EqualTo(new[] { "announce", "withdraw" }));
    }

    [Test]
    public async Task AnnounceAsync_CommandFails_DoesNotThrow_AndWithdrawStillRuns()
    {
        var log = Path.Combine(_directory, "routing.log");
        var mode = new InstanceMode(Enabled("exit 3", $"echo withdraw >> {log}"), NullLogger.Instance, Record, Path.Combine(_directory, "unused"));

        await mode.AnnounceAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
        await mode.WithdrawAsync("stop").WaitAsync(TimeSpan.FromSeconds(30));

        Assert.That(File.ReadAllLines(log), Is.EqualTo(new[] { "withdraw" }));
    }

    [Test]
    public void DefaultId_HostAndNamespaceInode()
    {
        Assert.Multiple(() =>
        {
            Assert.That(InstanceMode.DefaultId("gw7", "4026531840"), Is.EqualTo("gw7-net4026531840"));
            Assert.That(InstanceMode.DefaultId("gw7", null), Is.EqualTo("gw7"));
            Assert.That(InstanceMode.IdFor(new InstanceSettings { Id = "proxy-3" }), Is.EqualTo("proxy-3"));
        });
    }

    /// <summary>The scale-out sample: valid, in instance mode, and its unit withdraws with the same command after any exit.</summary>
    [Test]
    public void ScaleOutSample_ValidInstanceMode_UnitStopPostRunsTheWithdrawCommand()
    {
        var folder = Path.Combine(RepositoryPaths.Samples, "scale-out");

        var result = ProxyConfiguration.Load(Path.Combine(folder, "proxysel-instance.json"), [], new Microsoft.Extensions.Configuration.Memory.MemoryConfigurationSource());

        Assert.That(result.Errors, Is.Empty);
        var unit = File.ReadAllLines(Path.Combine(folder, "proxysel-instance.service"));
        var instance = result.Options!.Instance;
        var stopSeconds = int.Parse(unit.Single(l => l.StartsWith("TimeoutStopSec=", StringComparison.Ordinal))["TimeoutStopSec=".Length..], System.Globalization.CultureInfo.InvariantCulture);
        Assert.Multiple(() =>
        {
            Assert.That(instance.Enabled, Is.True);
            Assert.That(unit, Has.Some.EqualTo("ExecStopPost=-" + instance.WithdrawCommand), "ExecStopPost= runs the daemon's own withdraw command");
            Assert.That(TimeSpan.FromSeconds(stopSeconds), Is.GreaterThanOrEqualTo(ProxyDaemon.ShutdownTimeoutFor(result.Options.DrainTimeout)));
        });
    }

    private static InstanceSettings Enabled(string? announce = null, string? withdraw = null) =>
        new() { Enabled = true, AnnounceCommand = announce, WithdrawCommand = withdraw };
}
