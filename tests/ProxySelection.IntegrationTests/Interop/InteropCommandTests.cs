using System.Text;
using ProxySelection.LabTool;
using ProxySelection.LabTool.Interop;
using ProxySelection.IntegrationTests.Proxy;

namespace ProxySelection.IntegrationTests.Interop;

/// <summary>The interop verb's choices that need no lab: cells, builds per instance, percentiles, the listing.</summary>
[TestFixture]
public sealed class InteropCommandTests
{
    [Test]
    public void Select_NoName_CiSubsetOrFullMatrix_ANameOutsideTheMatrixIsNull()
    {
        Assert.Multiple(() =>
        {
            Assert.That(InteropCommand.Select(false, [])!.Select(c => c.Name), Is.EqualTo(InteropMatrix.CiSubset().Select(c => c.Name)));
            Assert.That(InteropCommand.Select(true, [])!, Has.Count.EqualTo(InteropMatrix.Full().Count));
            Assert.That(InteropCommand.Select(false, ["mptcp-tcp-3-explicit-first"])!.Single().Proxies, Has.Count.EqualTo(3));
            Assert.That(InteropCommand.Select(false, ["mptcp-tcp-9"]), Is.Null);
        });
    }

    [Test]
    public void FullMatrix_CellNamesAreUnique_AndTheCiSubsetIsPartOfIt()
    {
        var names = InteropMatrix.Full().Select(c => c.Name).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(names, Is.Unique);
            Assert.That(names, Is.SupersetOf(InteropMatrix.CiSubset().Select(c => c.Name)));
        });
    }

    [Test]
    public void TryParseBinaries_NamedAndPositional_GapsTakeTheBuildBefore_MissingFileRefused()
    {
        var dll = ProxyLab.ProxyselDll;
        Assert.Multiple(() =>
        {
            Assert.That(InteropCommand.TryParseBinaries([$"P2={dll}"], Daemon, TextWriter.Null, out var named), Is.True);
            Assert.That(named.Select(b => b.Label), Is.EqualTo(new[] { "current", dll }), "P1 before the named one runs the default daemon");
            Assert.That(InteropCommand.TryParseBinaries([$"P2={dll}"], null, TextWriter.Null, out _), Is.False, "no default daemon: P1 has no build");
            Assert.That(named[1].File, Is.EqualTo("dotnet"), "a .dll runs under dotnet");
            Assert.That(InteropCommand.TryParseBinaries([$"P3={dll}", "/bin/true"], Daemon, TextWriter.Null, out var gaps), Is.True);
            Assert.That(gaps.Select(b => b.Label), Is.EqualTo(new[] { "/bin/true", "/bin/true", dll }), "P2 takes the build named before it");
            Assert.That(InteropCommand.TryParseBinaries(["/nonexistent/proxysel"], Daemon, TextWriter.Null, out _), Is.False);
        });
    }

    private static readonly ProxyBinary Daemon = new("dotnet", [ProxyLab.ProxyselDll], "current");

    [TestCase(0.50, 3.0)]
    [TestCase(0.99, 5.0)]
    [TestCase(0.0, 1.0)]
    public void Percentile_NearestRank(double p, double expected) =>
        Assert.That(InteropComparison.Percentile([1, 2, 3, 4, 5], p), Is.EqualTo(expected));

    [Test]
    public void List_PrintsEveryCellWithTheSimulatorsHolder_WithoutRunningAnything()
    {
        using var stdout = new MemoryStream();
        int exit = Cli.Run(["interop", "--list"], stdout, TextWriter.Null);
        var lines = Encoding.UTF8.GetString(stdout.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Multiple(() =>
        {
            Assert.That(exit, Is.Zero);
            Assert.That(lines, Has.Length.EqualTo(InteropMatrix.CiSubset().Count));
            Assert.That(lines.Single(l => l.StartsWith("mptcp-tcp-3-explicit-nearest-server ", StringComparison.Ordinal)), Does.Contain("expected holder P3"));
            Assert.That(lines.Single(l => l.StartsWith("mptcp-tcp-3-implicit ", StringComparison.Ordinal)), Does.Contain("expected holder P3"));
        });
    }
}
