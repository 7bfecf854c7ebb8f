using System.Globalization;
using System.Text;
using System.Text.Json;
using ProxySelection.Negotiation;

namespace ProxySelection.Host.Interop;

/// <summary>One measured line of the implicit-vs-explicit comparison.</summary>
internal sealed record MeasuredRow(
    int Proxies,
    string Mode,
    string Holder,
    int ContextHolders,
    int ExtraUpstreamConnections,
    int Probes,
    double ColdConnectMilliseconds,
    double P50Milliseconds,
    double P99Milliseconds,
    int Connections,
    bool Ok);

/// <summary>
/// <c>proxysel interop --compare</c>: the IETF 91 analysis' comparison measured on the real kernel, for an MPTCP client,
/// a TCP-only server and chains of 1-3 downgrade proxies (spec Appendix B beside the simulator's figures). Per chain
/// and mode, one cold connection judged as an interop cell (its counters give who held context, the probes and the
/// upstream connections), then <c>count</c> connections one after another on fresh instances timed by the client.
/// </summary>
internal sealed class InteropComparison(InteropOptions options, int count, TextWriter output)
{
    private static readonly (string Name, SignalingMode Mode, SelectionPolicy Policy)[] Modes =
    [
        ("no proxy (routers)", SignalingMode.Explicit, SelectionPolicy.First),
        ("implicit", SignalingMode.Implicit, SelectionPolicy.First),
        ("explicit first", SignalingMode.Explicit, SelectionPolicy.First),
        ("explicit nearest-server", SignalingMode.Explicit, SelectionPolicy.NearestServer),
    ];

    public async Task<int> RunAsync(bool json, CancellationToken cancellationToken)
    {
        output.WriteLine($"proxysel interop --compare: MPTCP client, TCP-only server, 1-3 downgrade proxies; {count} connections timed per line");
        var runner = new InteropRunner(options);
        var rows = new List<MeasuredRow>();
        for (int n = 1; n <= 3 && !cancellationToken.IsCancellationRequested; n++)
        {
            foreach (var (name, mode, policy) in Modes)
            {
                if (cancellationToken.IsCancellationRequested)
                {
                    break;
                }

                bool routers = name.StartsWith("no proxy", StringComparison.Ordinal);
                var cell = new InteropCell(true, false, routers ? [] : [.. Enumerable.Repeat(new InteropProxy(mode, policy), n)]);
                var row = await MeasureAsync(runner, cell, n, name, cancellationToken).ConfigureAwait(false);
                rows.Add(row);
                output.WriteLine(FormatRow(row));
            }
        }

        output.WriteLine();
        output.Write(Format(rows, count));
        if (json)
        {
            output.WriteLine(Json(rows));
        }

        return cancellationToken.IsCancellationRequested ? InteropExitCodes.Interrupted : rows.All(r => r.Ok) ? ExitCodes.Ok : InteropExitCodes.Unexpected;
    }

    private async Task<MeasuredRow> MeasureAsync(InteropRunner runner, InteropCell cell, int n, string mode, CancellationToken cancellationToken)
    {
        var cold = await runner.RunAsync(cell, cancellationToken).ConfigureAwait(false);
        double Sum(string counter) => cold.Instances.Sum(i => i.Counters.TryGetValue(counter, out var v) ? v : 0);
        // Held a SYN or intercepted anything during setup: the analysis' "context at initial subflow setup".
        int context = cold.Instances.Count(i => i.Counters.GetValueOrDefault("held") + i.Counters.GetValueOrDefault("intercepted") > 0);
        int probes = (int)Sum("probes");
        int holders = cold.HolderByOutput == "none" ? 0 : cold.HolderByOutput.Split('+').Length;
        // Every probe is a connection toward the server; every intercept that did not adopt its probe opens one more;
        // the holder's one upstream leg is the only one that carries the client's data.
        int extra = probes + (int)(Sum("intercepted") - Sum("probes_adopted")) - holders;
        IReadOnlyList<double> times = [];
        if (cold.Ok)
        {
            try
            {
                times = await runner.TimeConnectionsAsync(cell, count, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is InvalidOperationException or ProxySelection.Lab.LabException or OperationCanceledException or TimeoutException)
            {
                output.WriteLine($"    timing failed: {e.Message}");
            }
        }
        else
        {
            output.WriteLine($"    the cold connection was not as expected ({cold.Expected.Holder} expected, {cold.HolderByOutput} held): {cold.Error}");
        }

        var sorted = times.Order().ToList();
        return new MeasuredRow(n, mode, cold.HolderByOutput, context, extra, probes, cold.ConnectMilliseconds,
            Percentile(sorted, 0.50), Percentile(sorted, 0.99), sorted.Count, cold.Ok && sorted.Count == count);
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
        $"{r.Proxies,7} | {r.Mode,-23} | {r.Holder,-6} | {r.ContextHolders,7} | {r.ExtraUpstreamConnections,20} | {r.Probes,6} | {r.ColdConnectMilliseconds,12:0.000} | {r.P50Milliseconds,9:0.000} | {r.P99Milliseconds,9:0.000} | {r.Connections,5}{(r.Ok ? "" : " | NOT AS EXPECTED")}");

    /// <summary>The measured table (for the terminal and spec Appendix B).</summary>
    public static string Format(IReadOnlyList<MeasuredRow> rows, int count)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var text = new StringBuilder();
        text.AppendLine("proxies | mode                    | holder | context | extra upstream conns | probes | cold connect | p50 (ms) | p99 (ms) | conns");
        text.AppendLine("--------|-------------------------|--------|---------|----------------------|--------|--------------|-----------|-----------|------");
        foreach (var r in rows)
        {
            text.AppendLine(FormatRow(r));
        }

        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"MPTCP client (curl under mptcpize), TCP-only nginx, N downgrade `proxysel run` instances in namespaces (veth, no added delay). context, extra"));
        text.AppendLine("upstream conns and probes: from the instances' counters on a cold first connection; cold connect: that connection's");
        text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"SYN to SYN/ACK at the client (ms); p50/p99: {count} further connections one after another on fresh instances (the first cold)."));
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
                WriteNumber(w, "cold_connect_ms", r.ColdConnectMilliseconds);
                WriteNumber(w, "p50_ms", r.P50Milliseconds);
                WriteNumber(w, "p99_ms", r.P99Milliseconds);
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
