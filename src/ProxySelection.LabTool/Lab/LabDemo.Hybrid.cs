using System.Globalization;
using System.Net;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Lab;
using LabEnvironment = ProxySelection.Lab.Lab;

namespace ProxySelection.LabTool.Lab;

/// <summary>The second scenario: hybrid access, where neither end speaks MPTCP and two proxies provide it in between.</summary>
internal sealed partial class LabDemo
{
    private async Task<bool> RunHybridAsync(LabEnvironment lab, string directory, CancellationToken ct)
    {
        output.WriteLine("Scenario 2: hybrid access. Neither end speaks MPTCP: the home router (CPE, upgrade role) turns the");
        output.WriteLine("client's plain TCP connection into MPTCP over its dsl and lte links; the operator's aggregation proxy");
        output.WriteLine("(AGG, downgrade role) turns it back into plain TCP toward the server.");
        output.WriteLine();
        output.WriteLine($"  home client (TCP) --> CPE ={DemoChain.Dsl}=> AGG --> server (nginx, TCP only)");
        output.WriteLine($"                            ={DemoChain.Lte}=>");
        output.WriteLine();
        var step = Step("Building home, CPE, AGG and server namespaces");
        var chain = await HybridChain.BuildAsync(lab, string.Create(CultureInfo.InvariantCulture, $"{options.RateMbit}mbit"), ct).ConfigureAwait(false);
        step.Done($"dsl and lte shaped to {options.RateMbit} Mbit/s (HTB)");

        step = Step($"Starting nginx (plain TCP) with a {options.SizeMegabytes} MB file");
        _processes++;
        var nginx = await NginxServer.StartAsync(chain.ServerNs, 80, IPAddress.Parse(HybridChain.Server), mptcp: false, StepTimeout).WaitAsync(ct).ConfigureAwait(false);
        var sha = LabNetwork.CreateRandomFile(Path.Combine(nginx.WebRoot, "hybrid.bin"), (long)options.SizeMegabytes << 20);
        step.Done($"http://{HybridChain.Server}/hybrid.bin");

        step = Step("Starting the proxies: CPE (`proxysel run --role upgrade`) and AGG (`--role downgrade`)");
        var keyFile = await KeyFileAsync(directory, ct).ConfigureAwait(false);
        // Port 80 for the download, iperf3's port for the throughput comparison.
        var ports = string.Create(CultureInfo.InvariantCulture, $"80,{HybridThroughput.Port}");
        var agg = StartProxy(chain.Agg, 2, keyFile, ports: ports);
        var cpe = StartProxy(chain.Cpe, 1, keyFile, "upgrade", ports);
        await agg.WaitForOutputAsync("proxysel: running", StepTimeout, ct).ConfigureAwait(false);
        await cpe.WaitForOutputAsync("proxysel: running", StepTimeout, ct).ConfigureAwait(false);
        step.Done($"CPE pid {cpe.Pid}, AGG pid {agg.Pid}");
        output.WriteLine("    hybrid chain up");

        output.WriteLine($"[{++_step}] Downloading {options.SizeMegabytes} MB with plain TCP (curl) from the home client through CPE and AGG");
        var path = Path.Combine(directory, "hybrid.bin");
        var download = await DownloadAsync(chain.HomeNs, mptcp: false, $"http://{HybridChain.Server}/hybrid.bin", path,
            chain.Cpe, HybridChain.Server, ct).ConfigureAwait(false);
        bool intact = download.Bytes == (long)options.SizeMegabytes << 20 && LabNetwork.Sha256OfFile(path) == sha;

        await WaitForRelayLineAsync(cpe, ct).ConfigureAwait(false);
        await WaitForRelayLineAsync(agg, ct).ConfigureAwait(false);
        // The download's trace; the comparison below adds connections of its own.
        IReadOnlyList<ProxyEvent> cpeDownload = ProxyTrace.Read(cpe), aggDownload = ProxyTrace.Read(agg);

        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"[{++_step}] Comparing one path with both, the same way for each: iperf3 (plain TCP) from the home client through CPE and AGG,"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"    {HybridThroughput.OmitSeconds} s left uncounted (set-up, slow start), then {ComparisonSeconds} s counted; \"one path\" = the CPE's lte endpoint removed"));
        _processes += 2; // an iperf3 server for each of the two transfers
        var comparison = await HybridThroughput.CompareAsync(chain, rounds: 1, ComparisonSeconds, round => output.WriteLine(string.Create(
            CultureInfo.InvariantCulture, $"      {(round.BothPaths ? "both paths" : "one path  ")}  {round.Mbit,5:F1} Mbit/s")), ct).ConfigureAwait(false);

        step = Step("Collecting the proxies' state");
        await cpe.StopAsync().ConfigureAwait(false);
        await agg.StopAsync().ConfigureAwait(false);
        await WaitForStoppedAsync(cpe, ct).ConfigureAwait(false);
        await WaitForStoppedAsync(agg, ct).ConfigureAwait(false);
        bool rulesRemoved = cpe.Output.Contains("rules removed", StringComparison.Ordinal) && agg.Output.Contains("rules removed", StringComparison.Ordinal);
        step.Done(rulesRemoved ? "both stopped and removed their rules" : "a proxy did not report its rules removed ✘");
        await nginx.DisposeAsync().ConfigureAwait(false);
        return rulesRemoved & ReportHybrid(download, intact, comparison, cpeDownload, aggDownload);
    }

    private bool ReportHybrid(Download download, bool intact, HybridComparison comparison, IReadOnlyList<ProxyEvent> cpeOutput, IReadOnlyList<ProxyEvent> aggOutput)
    {
        var cpeRelay = ProxyTrace.Relay(cpeOutput);
        var aggRelay = ProxyTrace.Relay(aggOutput);
        // The CPE holds a TCP client leg and an MPTCP upstream; the AGG an MPTCP client leg and a TCP upstream.
        bool cpeOk = cpeRelay is not null && cpeRelay.GetValueOrDefault("client") == "NotMptcp" && cpeRelay.GetValueOrDefault("upstream") == "Active";
        bool aggOk = aggRelay is not null && aggRelay.GetValueOrDefault("client") == "Active" && aggRelay.GetValueOrDefault("upstream") != "Active";
        output.WriteLine();
        output.WriteLine("Result (hybrid access)");
        output.WriteLine("----------------------");
        output.WriteLine($"Download: {(intact ? "complete, SHA-256 matches the server's file" : "INCOMPLETE or corrupted ✘")}");
        output.WriteLine();
        output.WriteLine("Who held which leg");
        output.WriteLine("  expected: CPE holds the client's TCP connection and opens MPTCP upstream (upgrade);");
        output.WriteLine("            AGG holds that MPTCP connection and opens TCP to the server (downgrade)");
        output.WriteLine($"  actual:   CPE client leg {cpeRelay?.GetValueOrDefault("client") ?? "none"}, upstream {cpeRelay?.GetValueOrDefault("upstream") ?? "none"} {(cpeOk ? "✔" : "✘")}");
        output.WriteLine($"            AGG client leg {aggRelay?.GetValueOrDefault("client") ?? "none"}, upstream {aggRelay?.GetValueOrDefault("upstream") ?? "none"} {(aggOk ? "✔" : "✘")}");
        output.WriteLine();
        output.WriteLine("Subflows between CPE and AGG (the CPE's MPTCP connection, one subflow per uplink)");
        foreach (var (local, remote) in download.Subflows)
        {
            string name = local.StartsWith(HybridChain.CpeDsl + ":", StringComparison.Ordinal) ? DemoChain.Dsl
                : local.StartsWith(HybridChain.CpeLte + ":", StringComparison.Ordinal) ? DemoChain.Lte : "?";
            output.WriteLine($"  {name,-4} {local,-22} -> {remote}");
        }

        output.WriteLine($"  {download.Subflows.Count} subflows seen at the CPE; AGG's client leg reports subflows={aggRelay?.GetValueOrDefault("subflows") ?? "?"}");
        output.WriteLine();
        output.WriteLine("Throughput (the home client sees plain TCP)");
        WriteThroughput(download);
        WriteComparison(comparison);
        output.WriteLine();
        WriteTrace(("CPE", cpeOutput), ("AGG", aggOutput));
        output.WriteLine();
        return intact && download.HttpStatus == 200 && cpeOk && aggOk && download.Subflows.Count == 2;
    }

    /// <summary>Counted seconds of each comparison transfer: with the uncounted one, about 10 s for the pair.</summary>
    private const int ComparisonSeconds = 4;

    private void WriteComparison(HybridComparison comparison)
    {
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  steady state (iperf3, payload received by the home client, {HybridThroughput.OmitSeconds} s left out, {ComparisonSeconds} s counted):"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"    one path  (dsl subflow only)        {comparison.OnePathMbit,5:F1} Mbit/s"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"    both paths (dsl and lte subflows)   {comparison.BothPathsMbit,5:F1} Mbit/s"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"    both paths / one path = {comparison.Ratio:F2} x {(comparison.Ratio >= 1.9 ? "(goal: at least 1.9 ✔)" : $"(goal: at least 1.9; a busy machine lowers it: load average {LoadAverage()} on {Environment.ProcessorCount} CPUs)")}"));
    }

    /// <summary>The 1-minute load average, as the kernel reports it.</summary>
    private static string LoadAverage()
    {
        try
        {
            return File.ReadAllText("/proc/loadavg").Split(' ')[0];
        }
        catch (IOException)
        {
            return "?";
        }
    }
}
