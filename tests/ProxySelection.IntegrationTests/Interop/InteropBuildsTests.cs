using ProxySelection.IntegrationTests.Proxy;

namespace ProxySelection.IntegrationTests.Interop;

/// <summary>
/// Issue 5: instances of different builds against each other (how an operator tries a new version against the deployed
/// one): two copies of this build in two directories, one per proxy, each cell still as the simulator expects.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class InteropBuildsTests
{
    [Test]
    public async Task TwoBuildsInTwoDirectories_EachProxyRunsItsOwn_CellsAsExpected()
    {
        var root = Directory.CreateTempSubdirectory("psel-builds-").FullName;
        try
        {
            var deployed = ProxyLab.CopyDaemon(Path.Combine(root, "deployed"));
            var candidate = ProxyLab.CopyDaemon(Path.Combine(root, "candidate"));

            var run = await InteropRun.StartAsync(TimeSpan.FromMinutes(3),
                "--cell", "mptcp-tcp-2-explicit-nearest-server", "--cell", "mptcp-tcp-3-explicit-first",
                "--proxy-binary", $"P1={deployed}", "--proxy-binary", $"P2={candidate}");

            Assert.Multiple(() =>
            {
                Assert.That(run.ExitCode, Is.Zero, run.Output);
                foreach (var cell in run.Cells)
                {
                    Assert.That(cell.GetProperty("ok").GetBoolean(), Is.True, cell.ToString());
                    var builds = cell.GetProperty("chain").EnumerateArray().Select(p => p.GetProperty("binary").GetString()).ToList();
                    Assert.That(builds[0], Is.EqualTo(deployed), "P1 ran the deployed build");
                    Assert.That(builds.Skip(1), Is.All.EqualTo(candidate), "P2 (and P3, after it) ran the candidate");
                    var instances = cell.GetProperty("instances").EnumerateArray().Select(i => i.GetProperty("binary").GetString()).ToList();
                    Assert.That(instances, Is.EqualTo(builds));
                }
            });
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
