using System.Globalization;
using System.Text;
using System.Text.Json;
using ProxySelection.Negotiation;

namespace ProxySelection.LabTool.Interop;

/// <summary>One measured line of the implicit-vs-explicit comparison.</summary>
internal sealed record MeasuredRow(
    int Proxies,
    string Mode,
    string Holder,
    int ContextHolders,
    int ExtraUpstreamConnections,
    int Probes,
    double ColdP50Milliseconds,
    double ColdP99Milliseconds,
    double WarmP50Milliseconds,
    double WarmP99Milliseconds,
    int Connections,
    bool Ok);

/// <summary>
/// <c>proxysel interop --compare</c>: the IETF 91 analysis' comparison measured on the real kernel, for an MPTCP client,
/// a TCP-only server and chains of 1-3 downgrade proxies (spec Appendix B beside the simulator's figures). Per chain
/// and mode, one cold connection judged as an interop cell (its counters give who held context, the probes and the
/// upstream connections), then <c>count</c> connections to as many server addresses (cold caches) and <c>count</c> to
/// one address (warm) on fresh instances, timed by the client.
/// </summary>
internal sealed class InteropComparison(InteropOptions options, int count, TextWriter output)
{
    private static readonly (string Name, SignalingMode Mode, SelectionPolicy Policy)[] Modes =
    [
        ("implicit", SignalingMode.Implicit, SelectionPolicy.First),
        ("explicit first", SignalingMode.Explicit, SelectionPolicy.First),
        ("explicit nearest-server", SignalingMode.Explicit, SelectionPolicy.NearestServer),
    ];

    public async Task<int> RunAsync(bool json, CancellationToken cancellationToken)
    {
        output.WriteLine($"proxysel-lab interop --compare: MPTCP client, TCP-only server, 1-3 downgrade proxies; {count} connections timed per line");
        var runner = new InteropRunner(options);
        var rows = new List<MeasuredRow>();
        // The baseline: one router, no proxy; the client's handshake is then with the server itself.
        var configurations = new List<(int N, string Name, InteropCell Cell)> { (0, "no proxy (router)", new InteropCell(true, false, [])) };
        for (int n = 1; n <= 3; n++)
        {
            foreach (var (name, mode, policy) in Modes)
            {
                configurations.Add((n, name, new InteropCell(true, false, [.. Enumerable.Repeat(new InteropProxy(mode, policy), n)])));
            }
        }

        foreach (var (n, name, cell) in configurations)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                break;
            }

            var row = await MeasureAsync(runner, cell, n, name, cancellationToken).ConfigureAwait(false);
            rows.Add(row);
            output.WriteLine(FormatRow(row));
        }

        output.WriteLine();
        output.Write(Format(rows, count, options.LinkDelay));
        if (json)
        {
            output.WriteLine(Json(rows));
        }

        return cancellationToken.IsCancellationRequested ? InteropExitCodes.Interrupted : rows.All(r => r.Ok) ? ExitCodes.Ok : InteropExitCodes.Unexpected;
    }

    private async Task<MeasuredRow> MeasureAsync(InteropRunner runner, InteropCell cell, int n, string mode, CancellationToken cancellationToken)
    {
        var first = await runner.RunAsync(cell, cancellationToken).ConfigureAwait(false);
        double Sum(string counter) => first.Instances.Sum(i => i.Counters.TryGetValue(counter, out var v) ? v : 0);
        // Held a SYN or intercepted anything during setup: the analysis' "context at initial subflow setup".
        int context = first.Instances.Count(i => i.Counters.GetValueOrDefault("held") + i.Counters.GetValueOrDefault("intercepted") > 0);
        int probes = (int)Sum("probes");
        int holders = first.HolderByOutput == "none" ? 0 : first.HolderByOutput.Split('+').Length;
        // Every probe is a connection toward the server; every intercept that did not adopt its probe opens one more;
        // the holder's one upstream leg is the only one that carries the client's data.
        int extra = probes + (int)(Sum("intercepted") - Sum("probes_adopted")) - holders;
        IReadOnlyList<double> cold = [];
        IReadOnlyList<double> warm = [];
        if (first.Ok)
        {
            try
            {
                cold = [.. (await runner.TimeConnectionsAsync(cell, count, cold: true, cancellationToken).ConfigureAwait(false)).Order()];
                warm = [.. (await runner.TimeConnectionsAsync(cell, count, cold: false, cancellationToken).ConfigureAwait(false)).Order()];
            }
            catch (Exception e) when (e is InvalidOperationException or ProxySelection.Lab.LabException or OperationCanceledException or TimeoutException)
            {
                output.WriteLine($"    timing failed: {e.Message}");
            }
        }
        else
        {
            output.WriteLine($"    the first connection was not as expected:\n{InteropCommand.Explain(first)}");
        }

        return new MeasuredRow(n, mode, first.HolderByOutput, context, extra, probes,
            Percentile(cold, 0.50), Percentile(cold, 0.99), Percentile(warm, 0.50), Percentile(warm, 0.99), cold.Count,
            first.Ok && cold.Count == count && warm.Count == count);
    }

    /// <summary>Nearest-rank percentile of an ascending list (NaN when empty).</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double p)
    {
        ArgumentNullException.ThrowIfNull(sorted);
        if (sorted.Count == 0)
        {
            return double.NaN;
        }

        int rank = (int)Math.Ceiling(p * sorted.Count);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Count - 1)];
    }

    private static string FormatRow(MeasuredRow r) => string.Create(CultureInfo.InvariantCulture,
        $"{r.Proxies,7} | {r.Mode,-23} | {r.Holder,-6} | {r.ContextHolders,7} | {r.ExtraUpstreamConnections,20} | {r.Probes,6} | {r.ColdP50Milliseconds,8:0.0} | {r.ColdP99Milliseconds,8:0.0} | {r.WarmP50Milliseconds,8:0.0} | {r.WarmP99Milliseconds,8:0.0} | {r.Connections,5}{(r.Ok ? "" : " | NOT AS EXPECTED")}");

    /// <summary>The measured table (for the terminal and spec Appendix B).</summary>
    public static string Format(IReadOnlyList<MeasuredRow> rows, int count, TimeSpan delay)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var text = new StringBuilder();
        text.AppendLine("proxies | mode                    | holder | context | extra upstream conns | probes | cold p50 | cold p99 | warm p50 | warm p99 | conns");
        text.AppendLine("--------|-------------------------|--------|---------|----------------------|--------|----------|----------|----------|----------|------");
        foreach (var r in rows)
        {
            text.AppendLine(FormatRow(r));
        }

        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"MPTCP client (curl under mptcpize), TCP-only nginx, N downgrade `proxysel run` instances in namespaces, veth links with {(delay > TimeSpan.Zero ? $"{delay.TotalMilliseconds:0.#} ms one way on" : "no added delay on")}"));
        text.AppendLine("every link. context, extra upstream conns, probes: the instances' counters after one cold connection (a proxy");
        text.AppendLine("that held a SYN or intercepted counts as context). Setup = the client's SYN to its SYN/ACK (curl time_connect), ms:");
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"cold = {count} connections to {count} distinct server addresses (every cache misses), warm = {count} to one address; each series"));
        text.AppendLine("after one uncounted connection (a fresh .NET process compiles its packet path on first use).");
        return text.ToString();
    }

    private static string Json(IReadOnlyList<MeasuredRow> rows)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteString("verb", "interop-compare");
            w.WriteStartArray("rows");
            foreach (var r in rows)
            {
                w.WriteStartObject();
                w.WriteNumber("proxies", r.Proxies);
                w.WriteString("mode", r.Mode);
                w.WriteString("holder", r.Holder);
                w.WriteNumber("context_holders", r.ContextHolders);
                w.WriteNumber("extra_upstream_connections", r.ExtraUpstreamConnections);
                w.WriteNumber("probes", r.Probes);
                WriteNumber(w, "cold_p50_ms", r.ColdP50Milliseconds);
                WriteNumber(w, "cold_p99_ms", r.ColdP99Milliseconds);
                WriteNumber(w, "warm_p50_ms", r.WarmP50Milliseconds);
                WriteNumber(w, "warm_p99_ms", r.WarmP99Milliseconds);
                w.WriteNumber("connections", r.Connections);
                w.WriteBoolean("ok", r.Ok);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void WriteNumber(Utf8JsonWriter w, string name, double value)
    {
        if (double.IsFinite(value))
        {
            w.WriteNumber(name, Math.Round(value, 3));
        }
        else
        {
            w.WriteNull(name);
        }
    }
}
