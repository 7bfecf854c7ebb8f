using ProxySelection.LabTool.Interop;
using ProxySelection.LabTool.Lab;

namespace ProxySelection.LabTool.Tests;

/// <summary>
/// The prerequisites every lab verb checks first, against a made-up machine: tools are files in a temp directory that
/// stands for PATH, root and the kernel are switches, the installer is recorded (no root, no apt).
/// </summary>
[FixtureLifeCycle(LifeCycle.InstancePerTestCase)]
public sealed class PrerequisiteGateTests : IDisposable
{
    private static readonly (string Tool, string Package)[] Tools = [("ip", "iproute2"), ("tc", "iproute2"), ("ethtool", "ethtool"), ("curl", "curl")];
    private readonly DirectoryInfo _path = Directory.CreateTempSubdirectory("psel-gate-path-");
    private readonly List<IReadOnlyList<string>> _installs = [];
    private readonly StringWriter _output = new();
    private readonly StringWriter _error = new();

    public void Dispose()
    {
        _path.Delete(recursive: true);
        _output.Dispose();
        _error.Dispose();
    }

    private void Have(params string[] tools)
    {
        foreach (var tool in tools)
        {
            File.WriteAllText(Path.Combine(_path.FullName, tool), "");
        }
    }

    /// <summary>A machine whose installer "installs" by creating the tools in <paramref name="installs"/>, or fails.</summary>
    private PrerequisiteGate Gate(bool root = true, bool mptcp = true, bool installWorks = true, string[]? installs = null,
        IReadOnlyList<(string Tool, string Package)>? tools = null) =>
        new("interop", tools ?? Tools, new MachineProbe(() => root, () => mptcp, () => [_path.FullName], (packages, log) =>
        {
            _installs.Add(packages);
            log.WriteLine("  | apt output");
            Have(installs ?? []);
            return installWorks;
        }));

    [Test]
    public void Check_EverythingThere_NullAndNothingInstalled()
    {
        Have("ip", "tc", "ethtool", "curl");

        Assert.That(Gate().Check(install: true, _output, _error), Is.Null, _error.ToString());
        Assert.That(_installs, Is.Empty);
    }

    [Test]
    public void Check_EthtoolMissingNoInstall_OneLineNamingToolAndPackage_Exit4_NothingInstalled()
    {
        Have("ip", "tc", "curl");

        int? exit = Gate().Check(install: false, _output, _error);

        var lines = _error.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Multiple(() =>
        {
            Assert.That(exit, Is.EqualTo(ExitCodes.PrerequisitesMissing).And.EqualTo(4));
            Assert.That(lines, Has.Length.EqualTo(1));
            Assert.That(lines[0], Does.Contain("missing ethtool (package ethtool)").And.Contain("apt-get install ethtool"));
            Assert.That(_installs, Is.Empty);
        });
    }

    [Test]
    public void Check_MissingAndInstallWorks_InstallsEachPackageOnce_ThenNull()
    {
        Have("curl");

        int? exit = Gate(installs: ["ip", "tc", "ethtool"]).Check(install: true, _output, _error);

        Assert.Multiple(() =>
        {
            Assert.That(exit, Is.Null, _error.ToString());
            Assert.That(_installs, Has.Count.EqualTo(1));
            Assert.That(_installs[0], Is.EqualTo(new[] { "iproute2", "ethtool" }));
            Assert.That(_output.ToString(), Does.Contain("Installing missing prerequisites: iproute2, ethtool").And.Contain("installed iproute2, ethtool"));
        });
    }

    [Test]
    public void Check_InstallFails_OneLineAndExit4()
    {
        Have("ip", "tc", "curl");

        int? exit = Gate(installWorks: false).Check(install: true, _output, _error);

        Assert.Multiple(() =>
        {
            Assert.That(exit, Is.EqualTo(4));
            Assert.That(_error.ToString().Trim(), Does.StartWith("proxysel-lab interop: could not install ethtool (for ethtool (package ethtool))").And.Not.Contain('\n'));
        });
    }

    [Test]
    public void Check_InstallSucceedsButToolStillAbsent_SaysStillMissing_Exit4()
    {
        Have("ip", "tc", "curl");

        int? exit = Gate().Check(install: true, _output, _error);

        Assert.Multiple(() =>
        {
            Assert.That(exit, Is.EqualTo(4));
            Assert.That(_error.ToString(), Does.Contain("still missing after apt-get: ethtool (package ethtool)"));
        });
    }

    [Test]
    public void Check_NotRoot_Exit3_ToolsNotLookedAt()
    {
        int? exit = Gate(root: false).Check(install: true, _output, _error);

        Assert.Multiple(() =>
        {
            Assert.That(exit, Is.EqualTo(ExitCodes.NotRoot).And.EqualTo(3));
            Assert.That(_error.ToString(), Does.Contain("proxysel-lab interop needs root").And.Contain("sudo dotnet run --project src/ProxySelection.LabTool -c Release -- interop"));
            Assert.That(_installs, Is.Empty);
        });
    }

    [Test]
    public void Check_KernelWithoutMptcp_Exit4_SaysSo()
    {
        Have("ip", "tc", "ethtool", "curl");

        int? exit = Gate(mptcp: false).Check(install: true, _output, _error);

        Assert.Multiple(() =>
        {
            Assert.That(exit, Is.EqualTo(4));
            Assert.That(_error.ToString(), Does.Contain("no Multipath TCP"));
        });
    }

    [Test]
    public void InteropToolsFor_FullMatrix_NamesBirdAndBirdcFromBird2()
    {
        Assert.That(InteropCommand.ToolsFor(InteropMatrix.Full(), compare: false), Does.Contain(("bird", "bird2")).And.Contain(("birdc", "bird2")));
    }

    [Test]
    public void InteropToolsFor_CiSubsetOrCompare_NoTierCell_NoBird()
    {
        Assert.Multiple(() =>
        {
            Assert.That(InteropMatrix.CiSubset().Any(c => c.Tier > 1), Is.False, "the CI subset has no tier cell");
            Assert.That(InteropCommand.ToolsFor(InteropMatrix.CiSubset(), compare: false), Is.EqualTo(Prerequisites.InteropTools));
            Assert.That(InteropCommand.ToolsFor(InteropMatrix.Full(), compare: true), Is.EqualTo(Prerequisites.InteropTools));
        });
    }

    [Test]
    public void Check_TierCellWithoutBirdNoInstall_NamesToolAndAptPackage_Exit4()
    {
        Have([.. Prerequisites.InteropTools.Select(t => t.Tool)]);

        int? exit = Gate(tools: InteropCommand.ToolsFor(InteropMatrix.Tiers(), compare: false)).Check(install: false, _output, _error);

        Assert.Multiple(() =>
        {
            Assert.That(exit, Is.EqualTo(ExitCodes.PrerequisitesMissing));
            Assert.That(_error.ToString(), Does.Contain("missing bird (package bird2)").And.Contain("apt-get install bird2"));
            Assert.That(_installs, Is.Empty);
        });
    }
}
