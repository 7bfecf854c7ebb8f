namespace ProxySelection.LabTool.Tests;

/// <summary>Where the lab tool finds the daemon it starts: the order of the places, on a made-up file system.</summary>
public class DaemonLocatorTests
{
    private const string Tool = "/opt/lab";
    private const string Repo = "/src/psel";
    private static readonly string BuiltDaemon = $"{Repo}/src/ProxySelection.Host/bin/Release/net10.0/proxysel.dll";
    private static readonly string RepoTool = $"{Repo}/src/ProxySelection.LabTool/bin/Release/net10.0";

    private static string? Find(string? option, string? environment, string[] starts, params string[] files) =>
        DaemonLocator.Find(option, environment, starts, "Release", ["/usr/bin", "/usr/local/bin"], new HashSet<string>(files).Contains, out _);

    [Test]
    public void Find_OptionGiven_WinsOverEverythingElse()
    {
        Assert.That(Find("/x/proxysel", "/y/proxysel.dll", [Tool], "/x/proxysel", "/y/proxysel.dll", $"{Tool}/proxysel.dll"), Is.EqualTo("/x/proxysel"));
    }

    [Test]
    public void Find_OptionNamesNothing_NullAndSaysWhich_NoFallback()
    {
        var found = DaemonLocator.Find("/x/proxysel", null, [Tool], "Release", ["/usr/bin"], new HashSet<string> { $"{Tool}/proxysel.dll", "/usr/bin/proxysel" }.Contains, out var problem);
        Assert.Multiple(() =>
        {
            Assert.That(found, Is.Null);
            Assert.That(problem, Is.EqualTo("--proxysel names /x/proxysel, which does not exist"));
        });
    }

    [Test]
    public void Find_EnvironmentVariable_BeforeTheToolsDirectory()
    {
        Assert.That(Find(null, "/y/proxysel.dll", [Tool], "/y/proxysel.dll", $"{Tool}/proxysel.dll"), Is.EqualTo("/y/proxysel.dll"));
    }

    [Test]
    public void Find_BesideTheTool_DllBeforeApphost_BeforeRepositoryAndPath()
    {
        Assert.That(Find(null, null, [Tool], $"{Tool}/proxysel.dll", $"{Tool}/proxysel", "/usr/bin/proxysel"), Is.EqualTo($"{Tool}/proxysel.dll"));
        Assert.That(Find(null, null, [Tool], $"{Tool}/proxysel", "/usr/bin/proxysel"), Is.EqualTo($"{Tool}/proxysel"));
    }

    [Test]
    public void Find_ApphostStubBesideTheTool_WithoutItsDll_Skipped()
    {
        Assert.That(Find(null, null, [RepoTool], $"{RepoTool}/proxysel", $"{RepoTool}/proxysel.runtimeconfig.json", $"{Repo}/ProxySelection.sln", BuiltDaemon),
            Is.EqualTo(BuiltDaemon));
    }

    [Test]
    public void Find_ToolBuiltInTheRepository_TheHostBuildOfTheSameConfiguration()
    {
        Assert.That(Find(null, null, [RepoTool], $"{Repo}/ProxySelection.sln", BuiltDaemon, "/usr/bin/proxysel"), Is.EqualTo(BuiltDaemon));
    }

    [Test]
    public void Find_RunFromInsideTheRepository_FoundFromTheCurrentDirectory()
    {
        Assert.That(Find(null, null, [Tool, $"{Repo}/docs"], $"{Repo}/ProxySelection.sln", BuiltDaemon), Is.EqualTo(BuiltDaemon));
    }

    [Test]
    public void Find_OnlyOnPath_ThePathOne()
    {
        Assert.That(Find(null, null, [Tool], "/usr/local/bin/proxysel"), Is.EqualTo("/usr/local/bin/proxysel"));
    }

    [Test]
    public void Find_NowhereAtAll_NullWithOneLineNamingThePlacesAndTheBuildCommand()
    {
        var found = DaemonLocator.Find(null, null, [RepoTool], "Release", ["/usr/bin"], new HashSet<string> { $"{Repo}/ProxySelection.sln" }.Contains, out var problem);
        Assert.Multiple(() =>
        {
            Assert.That(found, Is.Null);
            Assert.That(problem, Does.Not.Contain('\n'));
            Assert.That(problem, Does.Contain("dotnet build src/ProxySelection.Host -c Release").And.Contain("--proxysel PATH"));
        });
    }
}
