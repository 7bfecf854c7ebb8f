using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using ProxySelection.Lab;
using ProxySelection.LabTool.Lab;

namespace ProxySelection.LabTool.Interop;

/// <summary>Exit codes of <c>proxysel-lab interop</c> (with <see cref="ExitCodes"/>: 3 not root, 4 prerequisites, 5 no daemon).</summary>
internal static class InteropExitCodes
{
    /// <summary>At least one cell did not show what the negotiation rules expect.</summary>
    public const int Unexpected = 1;

    /// <summary>Not root: namespaces and firewall rules need it.</summary>
    public const int NotRoot = 3;

    /// <summary>Stopped by SIGINT/SIGTERM (everything was torn down).</summary>
    public const int Interrupted = 130;
}

/// <summary>
/// <c>proxysel-lab interop</c>: proxy instances (of one build or several) against each other in a matrix of chains on
/// the real kernel, each cell judged against the chain simulator's expectation; <c>--compare</c> measures the
/// implicit-vs-explicit table of spec Appendix B.
/// </summary>
internal static partial class InteropCommand
{
    public static Command Build(TextWriter stderr)
    {
        var full = new Option<bool>("--full") { Description = "Run the whole matrix (client x server x 0-3 proxies x modes and policies) instead of the CI subset" };
        var cells = new Option<string[]>("--cell") { Description = "Run only the cell(s) with this name (see --list); repeatable" };
        var list = new Option<bool>("--list") { Description = "Print the cells and their expected holder without running anything" };
        var json = new Option<bool>("--json") { Description = "Also print one JSON object as the last line (cells with parameters, expected and actual holder, ok)" };
        var binaries = new Option<string[]>("--proxy-binary")
        {
            Description = "A proxysel build (apphost or .dll) per instance: given once, for every proxy; given k times, for P1..Pk (the last for the rest); or Pn=PATH for one proxy. Default: this build",
        };
        var size = new Option<int>("--size") { Description = "KiB downloaded per cell (64..65536)", DefaultValueFactory = _ => 512 };
        var rate = new Option<int>("--rate") { Description = "Mbit/s of each client path (1..1000)", DefaultValueFactory = _ => 20 };
        var timeout = new Option<int>("--cell-timeout") { Description = "Seconds one cell may take before it fails (10..600)", DefaultValueFactory = _ => 90 };
        var compare = new Option<bool>("--compare") { Description = "Measure implicit vs explicit for chains of 1-3 proxies (context holders, extra upstream connections, setup time p50/p99) instead of the matrix" };
        var connections = new Option<int>("--connections") { Description = "Connections per configuration timed by --compare, cold and warm each (2..500)", DefaultValueFactory = _ => 200 };
        var delay = new Option<double>("--delay") { Description = "One-way delay in ms on every link for --compare (0..100; needs the kernel's netem qdisc)", DefaultValueFactory = _ => 0 };
        var noInstall = new Option<bool>("--no-install") { Description = "Do not install missing Debian packages; fail with their names instead" };
        var daemonPath = DaemonLocator.CreateOption();
        var command = new Command("interop", "Run proxy instances against each other in namespaces: a matrix of chains of 0-3 proxies, each cell checked for the expected holder (from the simulator), subflows, data integrity and untouched pass-through (captures)")
        {
            full, cells, list, json, binaries, size, rate, timeout, compare, connections, delay, noInstall, daemonPath,
        };
        command.SetAction(result =>
        {
            var output = result.InvocationConfiguration.Output;
            int kib = result.GetValue(size);
            int mbit = result.GetValue(rate);
            int seconds = result.GetValue(timeout);
            int count = result.GetValue(connections);
            if (kib is < 64 or > 65536 || mbit is < 1 or > 1000 || seconds is < 10 or > 600 || count is < 2 or > 500 || result.GetValue(delay) is < 0 or > 100)
            {
                stderr.WriteLine("--size must be 64..65536, --rate 1..1000, --cell-timeout 10..600, --connections 2..500, --delay 0..100");
                return ExitCodes.Usage;
            }

            var selected = Select(result.GetValue(full), result.GetValue(cells) ?? []);
            if (selected is null)
            {
                stderr.WriteLine("--cell: no such cell; `proxysel-lab interop --list --full` names them all");
                return ExitCodes.Usage;
            }

            if (result.GetValue(list))
            {
                foreach (var cell in selected)
                {
                    var expected = InteropExpectation.For(cell);
                    output.WriteLine($"{cell.Name,-44} expected holder {expected.Holder,-5} subflows {expected.Subflows}");
                }

                return ExitCodes.Ok;
            }

            // Every instance without a build of its own runs the daemon found by default (or named by --proxysel).
            var named = result.GetValue(binaries) ?? [];
            var daemon = DaemonLocator.Resolve(result.GetValue(daemonPath), named.Length > 0 ? TextWriter.Null : stderr);
            if (daemon is null && named.Length == 0)
            {
                return ExitCodes.DaemonNotFound;
            }

            if (!TryParseBinaries(named, daemon, stderr, out var builds))
            {
                return ExitCodes.Usage;
            }

            if (new PrerequisiteGate("interop", ToolsFor(selected, result.GetValue(compare)), MachineProbe.ThisMachine).Check(!result.GetValue(noInstall), output, stderr) is { } notReady)
            {
                return notReady;
            }

            // Ours to handle: the running cell cancels and tears its namespaces down before we exit.
            using var interrupt = new InterruptSignals();
            var options = new InteropOptions(builds.Count > 0 ? builds : [daemon!], kib * 1024, mbit, TimeSpan.FromSeconds(seconds));
            LabRun.SweepStaleAsync(CancellationToken.None).GetAwaiter().GetResult();
            if (result.GetValue(compare))
            {
                return new InteropComparison(options with { LinkDelay = TimeSpan.FromMilliseconds(result.GetValue(delay)) }, count, output).RunAsync(result.GetValue(json), interrupt.Token).GetAwaiter().GetResult();
            }

            return RunMatrixAsync(selected, options, output, result.GetValue(json), interrupt.Token).GetAwaiter().GetResult();
        });
        return command;
    }

    /// <summary>The tools a run needs: BIRD too when it runs a tier cell (<c>--compare</c> runs none).</summary>
    public static IReadOnlyList<(string Tool, string Package)> ToolsFor(IReadOnlyList<InteropCell> cells, bool compare) =>
        !compare && cells.Any(c => c.Tier > 1) ? [.. Prerequisites.InteropTools, .. Prerequisites.TierTools] : Prerequisites.InteropTools;

    /// <summary>The cells to run: the CI subset, the full matrix, or the named ones (null when a name matches none).</summary>
    public static IReadOnlyList<InteropCell>? Select(bool full, IReadOnlyList<string> names)
    {
        if (names.Count == 0)
        {
            return full ? InteropMatrix.Full() : InteropMatrix.CiSubset();
        }

        var known = InteropMatrix.Full().Concat(InteropMatrix.CiSubset()).DistinctBy(c => c.Name).ToDictionary(c => c.Name, StringComparer.Ordinal);
        var chosen = new List<InteropCell>();
        foreach (var name in names)
        {
            if (!known.TryGetValue(name, out var cell))
            {
                return null;
            }

            chosen.Add(cell);
        }

        return chosen;
    }

    /// <summary>
    /// <c>PATH</c> values in order (P1, P2, ...) or <c>Pn=PATH</c>; every path must exist. P1 left out runs
    /// <paramref name="fallback"/>, which must then be there.
    /// </summary>
    public static bool TryParseBinaries(IReadOnlyList<string> values, ProxyBinary? fallback, TextWriter stderr, out IReadOnlyList<ProxyBinary> binaries)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(stderr);
        var byIndex = new SortedDictionary<int, ProxyBinary>();
        int next = 0;
        binaries = [];
        foreach (var value in values)
        {
            var match = NamedBinary().Match(value);
            int index = match.Success ? int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) - 1 : next++;
            var path = match.Success ? match.Groups[2].Value : value;
            if (!File.Exists(path))
            {
                stderr.WriteLine($"--proxy-binary: {path} does not exist");
                return false;
            }

            if (index is < 0 or >= LinearChainTopology.MaxHops)
            {
                stderr.WriteLine($"--proxy-binary: no proxy {value}");
                return false;
            }

            byIndex[index] = ProxyBinary.At(path);
        }

        if (byIndex.Count == 0)
        {
            return true;
        }

        // Gaps take the build named before them, or the default daemon.
        var list = new List<ProxyBinary>();
        for (int i = 0; i <= byIndex.Keys.Max(); i++)
        {
            var build = byIndex.TryGetValue(i, out var given) ? given : i > 0 ? list[i - 1] : fallback;
            if (build is null)
            {
                stderr.WriteLine("--proxy-binary: P1 has no build and no proxysel daemon was found; name one for P1 or give --proxysel PATH");
                return false;
            }

            list.Add(build);
        }

        binaries = list;
        return true;
    }

    private static async Task<int> RunMatrixAsync(IReadOnlyList<InteropCell> cells, InteropOptions options, TextWriter output, bool json, CancellationToken cancellationToken)
    {
        output.WriteLine($"proxysel-lab interop: {cells.Count} cell(s), {options.FileBytes / 1024} KiB download each, client paths {options.RateMbit} Mbit/s, at most {options.Timeout.TotalSeconds:0} s per cell");
        output.WriteLine(Header);
        var runner = new InteropRunner(options);
        var results = new List<CellResult>();
        foreach (var cell in cells)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                break;
            }

            var result = await runner.RunAsync(cell, cancellationToken).ConfigureAwait(false);
            results.Add(result);
            output.WriteLine(Row(result));
            if (!result.Ok)
            {
                output.WriteLine(Explain(result));
            }
        }

        int failed = results.Count(r => !r.Ok);
        output.WriteLine(cancellationToken.IsCancellationRequested
            ? $"interrupted after {results.Count} of {cells.Count} cells; everything was torn down"
            : failed == 0 ? $"all {results.Count} cells as expected" : $"{failed} of {results.Count} cells unexpected");
        if (json)
        {
            output.WriteLine(Json(results, options));
        }

        return cancellationToken.IsCancellationRequested ? InteropExitCodes.Interrupted : failed == 0 ? ExitCodes.Ok : InteropExitCodes.Unexpected;
    }

    private const string Header =
        "cell                                         | client | server | n | mode     | policy         | expected | holder (output) | holder (captures) | subflows | sha256 | pass-through | time   | ok";

    private static string Row(CellResult r) => string.Create(CultureInfo.InvariantCulture,
        $"{r.Cell.Name,-44} | {(r.Cell.ClientMptcp ? "mptcp" : "tcp"),-6} | {(r.Cell.ServerMptcp ? "mptcp" : "tcp"),-6} | {r.Cell.Proxies.Count} | {r.Cell.ModeName,-8} | {r.Cell.PolicyName,-14} | {r.Expected.Holder,-8} | {r.HolderByOutput,-15} | {r.HolderByCapture,-17} | {r.Subflows}/{r.Expected.Subflows,-6} | {(r.Integrity ? "ok" : "BAD"),-6} | {(r.PassthroughIdentical ? "identical" : "CHANGED"),-12} | {r.Elapsed.TotalSeconds,4:0.0} s | {(r.Ok ? "yes" : "NO")}");

    public static string Explain(CellResult r)
    {
        var text = new StringBuilder();
        if (r.Error is not null)
        {
            text.AppendLine("    error: " + r.Error.Replace("\n", "\n    ", StringComparison.Ordinal));
        }

        foreach (var i in r.Instances)
        {
            text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"    {i.Proxy} ({i.Binary}): held by output {i.HeldByOutput}, by capture {i.HeldByCapture}, identical {i.Identical}: {i.Detail.Replace("\n", "\n      ", StringComparison.Ordinal)}"));
        }

        return text.ToString().TrimEnd();
    }

    /// <summary>The one-line JSON object: options and a <c>cells</c> array.</summary>
    public static string Json(IReadOnlyList<CellResult> results, InteropOptions options)
    {
        ArgumentNullException.ThrowIfNull(results);
        ArgumentNullException.ThrowIfNull(options);
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteString("verb", "interop");
            w.WriteNumber("file_bytes", options.FileBytes);
            w.WriteNumber("rate_mbit", options.RateMbit);
            w.WriteBoolean("ok", results.All(r => r.Ok));
            w.WriteStartArray("cells");
            foreach (var r in results)
            {
                w.WriteStartObject();
                w.WriteString("name", r.Cell.Name);
                w.WriteString("client", r.Cell.ClientMptcp ? "mptcp" : "tcp");
                w.WriteString("server", r.Cell.ServerMptcp ? "mptcp" : "tcp");
                w.WriteNumber("proxies", r.Cell.Proxies.Count);
                w.WriteString("mode", r.Cell.ModeName);
                w.WriteString("policy", r.Cell.PolicyName);
                w.WriteString("family", r.Cell.Family);
                w.WriteStartArray("chain");
                for (int i = 0; i < r.Cell.Proxies.Count; i++)
                {
                    var p = r.Cell.Proxies[i];
                    w.WriteStartObject();
                    w.WriteString("id", $"P{i + 1}");
                    w.WriteString("mode", p.ModeName);
                    w.WriteString("policy", p.PolicyName);
                    w.WriteNumber("priority", p.Priority);
                    w.WriteBoolean("at_capacity", p.AtCapacity);
                    w.WriteString("binary", options.BinaryFor(i).Label);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteString("expected_holder", r.Expected.Holder);
                w.WriteString("actual_holder", r.HolderByOutput);
                w.WriteString("actual_holder_captures", r.HolderByCapture);
                w.WriteNumber("expected_subflows", r.Expected.Subflows);
                w.WriteNumber("subflows", r.Subflows);
                w.WriteBoolean("integrity", r.Integrity);
                w.WriteBoolean("passthrough_identical", r.PassthroughIdentical);
                if (double.IsFinite(r.ConnectMilliseconds))
                {
                    w.WriteNumber("connect_ms", Math.Round(r.ConnectMilliseconds, 3));
                }

                w.WriteNumber("seconds", Math.Round(r.Elapsed.TotalSeconds, 1));
                w.WriteStartArray("instances");
                foreach (var i in r.Instances)
                {
                    w.WriteStartObject();
                    w.WriteString("id", i.Proxy);
                    w.WriteString("binary", i.Binary);
                    w.WriteBoolean("held_by_output", i.HeldByOutput);
                    w.WriteBoolean("held_by_capture", i.HeldByCapture);
                    w.WriteBoolean("identical", i.Identical);
                    w.WriteString("detail", i.Detail);
                    w.WriteStartObject("counters");
                    foreach (var (name, value) in i.Counters)
                    {
                        w.WriteNumber(name, value);
                    }

                    w.WriteEndObject();
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                if (r.Error is not null)
                {
                    w.WriteString("error", r.Error);
                }

                w.WriteBoolean("ok", r.Ok);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    [GeneratedRegex(@"^P([1-9])=(.+)$", RegexOptions.CultureInvariant)]
    private static partial Regex NamedBinary();
}
