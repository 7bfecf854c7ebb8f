using System.Text.Json;
using ProxySelection.LabTool.Interop;

namespace ProxySelection.IntegrationTests.Interop;

/// <summary>
/// Issue 5: the CI subset of the interop matrix on the real kernel (one run of <c>proxysel interop --json</c>, about a
/// minute), asserted cell by cell: the holder named by the simulator is the one the instances report and the captures
/// show, the subflows, the SHA-256 of the download, untouched pass-through everywhere else.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class InteropMatrixTests
{
    private InteropRun _run = null!;

    [OneTimeSetUp]
    public async Task RunTheCiSubset() => _run = await InteropRun.StartAsync(TimeSpan.FromMinutes(10));

    [Test]
    public void CiSubset_EveryCellAsExpected_ExitsZero()
    {
        var unexpected = _run.Cells.Where(c => !c.GetProperty("ok").GetBoolean()).Select(c => c.ToString()).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(unexpected, Is.Empty);
            Assert.That(_run.ExitCode, Is.Zero, _run.Error);
            Assert.That(_run.Json.GetProperty("ok").GetBoolean(), Is.True);
            Assert.That(_run.Cells, Has.Count.EqualTo(InteropMatrix.CiSubset().Count));
        });
    }

    [Test]
    public void CiSubset_EveryCell_HolderFromOutputAndCapturesIsTheSimulatorsWithIntactDataAndUntouchedPassThrough()
    {
        Assert.Multiple(() =>
        {
            foreach (var cell in _run.Cells)
            {
                var name = cell.GetProperty("name").GetString();
                var expected = cell.GetProperty("expected_holder").GetString();
                Assert.That(cell.GetProperty("actual_holder").GetString(), Is.EqualTo(expected), $"{name}: holder by the instances' output");
                Assert.That(cell.GetProperty("actual_holder_captures").GetString(), Is.EqualTo(expected), $"{name}: holder by the captures");
                Assert.That(cell.GetProperty("subflows").GetInt32(), Is.EqualTo(cell.GetProperty("expected_subflows").GetInt32()), $"{name}: subflows");
                Assert.That(cell.GetProperty("integrity").GetBoolean(), Is.True, $"{name}: SHA-256 of the download");
                Assert.That(cell.GetProperty("passthrough_identical").GetBoolean(), Is.True, $"{name}: pass-through hops");
                foreach (var instance in cell.GetProperty("instances").EnumerateArray())
                {
                    bool holder = instance.GetProperty("id").GetString() == expected;
                    Assert.That(instance.GetProperty("identical").GetBoolean(), Is.EqualTo(!holder), $"{name}: {instance.GetProperty("id")} sides identical unless it holds: {instance.GetProperty("detail")}");
                    Assert.That(instance.GetProperty("counters").GetProperty("hook_failures").GetDouble(), Is.Zero, $"{name}: {instance.GetProperty("id")}");
                }
            }
        });
    }

    [Test]
    public void CiSubset_CoversEveryDimensionAtLeastOnce()
    {
        string[] Values(string property) => [.. _run.Cells.Select(c => c.GetProperty(property).ToString()).Distinct().Order()];
        Assert.Multiple(() =>
        {
            Assert.That(Values("client"), Is.EqualTo(new[] { "mptcp", "tcp" }));
            Assert.That(Values("server"), Is.EqualTo(new[] { "mptcp", "tcp" }));
            Assert.That(Values("proxies"), Is.EqualTo(new[] { "0", "1", "2", "3" }));
            Assert.That(Values("mode"), Is.EqualTo(new[] { "-", "explicit", "implicit", "mixed" }));
            Assert.That(Values("policy"), Is.SupersetOf(new[] { "first", "nearest-server", "priority", "capacity" }));
            Assert.That(Values("family"), Is.EqualTo(new[] { "v4", "v6" }));
        });
    }

    [Test]
    public void CiSubset_Ipv6Cells_TwoIpv6SubflowsThroughTheChainWithTheSimulatorsHolder()
    {
        var v6 = _run.Cells.Where(c => c.GetProperty("family").GetString() == "v6").ToList();
        Assert.Multiple(() =>
        {
            Assert.That(v6.Select(c => c.GetProperty("name").GetString()), Is.EqualTo(new[] { "mptcp-tcp-3-explicit-first-v6", "mptcp-tcp-2-implicit-v6" }));
            foreach (var cell in v6)
            {
                // Subflows are counted from the SYN/ACKs to the client's IPv6 addresses at the first hop: an IPv4 run shows none.
                Assert.That(cell.GetProperty("subflows").GetInt32(), Is.EqualTo(2), cell.ToString());
                Assert.That(cell.GetProperty("actual_holder").GetString(), Is.EqualTo(cell.GetProperty("expected_holder").GetString()));
                Assert.That(cell.GetProperty("ok").GetBoolean(), Is.True, cell.ToString());
            }
        });
    }

    [TestCase("first", "P1")]
    [TestCase("nearest-server", "P3")]
    [TestCase("priority", "P2")]
    [TestCase("capacity", "P2")]
    public void ThreeProxyChain_Policy_TheSelectedProxyAloneHoldsTwoSubflows(string policy, string holder)
    {
        var cell = _run.Cells.Single(c => c.GetProperty("proxies").GetInt32() == 3 && c.GetProperty("mode").GetString() == "explicit"
            && c.GetProperty("policy").GetString() == policy && c.GetProperty("family").GetString() == "v4");
        var held = cell.GetProperty("instances").EnumerateArray()
            .Where(i => i.GetProperty("counters").GetProperty("relayed").GetDouble() > 0 && i.GetProperty("held_by_output").GetBoolean())
            .Select(i => i.GetProperty("id").GetString()).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(cell.GetProperty("expected_holder").GetString(), Is.EqualTo(holder), "the simulator's expectation");
            Assert.That(cell.GetProperty("actual_holder").GetString(), Is.EqualTo(holder));
            Assert.That(cell.GetProperty("actual_holder_captures").GetString(), Is.EqualTo(holder));
            Assert.That(held, Is.EqualTo(new[] { holder }), "single holder: only it intercepted the client and relayed");
            Assert.That(cell.GetProperty("subflows").GetInt32(), Is.EqualTo(2));
            Assert.That(cell.GetProperty("ok").GetBoolean(), Is.True, cell.ToString());
        });
    }
}
