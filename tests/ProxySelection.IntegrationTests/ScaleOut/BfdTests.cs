using System.Globalization;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;
using ProxySelection.Lab.ScaleOut;

namespace ProxySelection.IntegrationTests.ScaleOut;

/// <summary>
/// An instance host that goes silent (its uplink drops everything: a hung host, a cut cable behind a switch) has no
/// process exit to withdraw on: the routing engine's own liveness check finds it. BFD between the router and the
/// instances (100 ms, 5 missed) instead of the BGP hold timer (3 s here, BIRD's least).
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class BfdTests
{
    private const int Instances = 3;

    [Test]
    public async Task SilentInstance_WithBfd_IsWithdrawnWithinASecondOrSo_AndNewConnectionsSucceed()
    {
        const int Fresh = 10;
        const int Silent = 2;
        await using var lab = await ScaleOutLab.StartWarmAsync(Instances, Instances, warmUp: false, bfd: true);
        var sha = lab.Sha;
        var sessions = await BfdSessionsUpAsync(lab.Topology, Instances);
        var ns = lab.Topology.Instances[Silent - 1];
        // Everything it would send upstream dropped (this kernel has no netem): BGP keepalives and BFD stop, the process lives on.
        foreach (var tool in new[] { "iptables", "ip6tables" })
        {
            await ns.CheckAsync(tool, ["-I", "OUTPUT", "-o", "uplink", "-j", "DROP"], ScaleOutLab.Timeout);
            await ns.CheckAsync(tool, ["-I", "FORWARD", "-o", "uplink", "-j", "DROP"], ScaleOutLab.Timeout);
        }

        var detection = await lab.Topology.WaitForGroupAsync(g => g.Count == Instances - 1 && !g.Contains(EcmpInstancesTopology.InstanceAddress(Silent)), ScaleOutLab.Timeout);
        await lab.Topology.WaitForGroupAsync(g => !g.Contains(EcmpInstancesTopology.InstanceAddress(Silent)), ScaleOutLab.Timeout, EcmpInstancesTopology.ServiceGroupId);
        var fresh = await lab.DownloadAsync("file.bin", Fresh, parallel: Fresh, rate: "4M", "fresh", socks: true);
        var router = await lab.Topology.Router.CheckAsync("birdc", ["-s", lab.Topology.RouterControlSocket, "show", "bfd", "sessions"], ScaleOutLab.Timeout);
        TestContext.Progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"BFD (100 ms x 5): instance {Silent} silenced -> router group without it in {detection.TotalMilliseconds:F0} ms; fresh SOCKS downloads failed {fresh.Count(d => d.Curl.ExitCode != 0)} of {Fresh}\n{sessions}\n{router}"));

        Assert.Multiple(() =>
        {
            Assert.That(detection, Is.LessThan(TimeSpan.FromSeconds(2)), "BFD, not the 3 s hold timer, took the instance out (aim: under 1 s)");
            Assert.That(fresh.Select(d => d.Curl.ExitCode), Is.All.Zero, string.Join("\n", fresh.Select(d => d.Curl.StdErr)));
            Assert.That(fresh.Select(d => File.Exists(d.Output) ? ProxyLab.Sha256Of(d.Output) : "missing"), Is.All.EqualTo(sha));
        });
    }

    /// <summary>Waits (bounded) until the router's BIRD lists <paramref name="count"/> BFD sessions Up; returns its table.</summary>
    private static async Task<string> BfdSessionsUpAsync(EcmpInstancesTopology topology, int count)
    {
        var started = System.Diagnostics.Stopwatch.StartNew();
        string table = "";
        while (started.Elapsed < ScaleOutLab.Timeout)
        {
            table = await topology.Router.CheckAsync("birdc", ["-s", topology.RouterControlSocket, "show", "bfd", "sessions"], ScaleOutLab.Timeout);
            if (table.Split('\n').Count(l => l.Contains(" Up ", StringComparison.Ordinal)) >= count)
            {
                return table;
            }

            await Task.Delay(100);
        }

        throw new LabException($"BFD sessions not up after {ScaleOutLab.Timeout}:\n{table}");
    }
}
