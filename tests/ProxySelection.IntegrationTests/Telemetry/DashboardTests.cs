using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Telemetry;

/// <summary>
/// Issue 15 item 6: samples/grafana/proxysel-dashboard.json asks only for series and labels the daemon exports, and a
/// real Prometheus (the Debian package) scraping a daemon in the lab evaluates every one of its PromQL expressions
/// (a parse error is HTTP 400) to the traffic that went through: intercepted, released and passed connections.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed partial class DashboardTests
{
    private const string ScrapeEndpoint = "http://127.0.0.1:9464/metrics";
    private const string PrometheusAddress = "127.0.0.1:9090";

    /// <summary>Labels Prometheus attaches to every scraped series (from the target, samples/prometheus.yml), not in the scrape.</summary>
    private static readonly string[] TargetLabels = ["job", "instance", "role"];

    /// <summary>What the dashboard's variables resolve to here: samples/prometheus.yml's job and target.</summary>
    private static readonly (string Variable, string Value)[] Variables =
    [
        ("$__rate_interval", "1m"), ("$__range", "5m"), ("$__interval", "15s"), ("$job", "proxysel"), ("$instance", "127.0.0.1:9464"),
    ];

    /// <summary>Panels whose figure this lab does not move: nothing is held once the transfers end, no queue overflows.</summary>
    private static readonly HashSet<string> ZeroPanels = new(StringComparer.Ordinal) { "Held now", "Held connections", "Queue drops" };

    private static readonly HashSet<string> Keywords = new(StringComparer.Ordinal)
    {
        "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan",
    };

    [Test]
    public void MetricNames_OfDashboardExpressions_AreTheSeriesNotFunctionsLabelsStringsOrDurations()
    {
        Assert.Multiple(() =>
        {
            Assert.That(MetricNames("""histogram_quantile(0.95, sum by (le) (rate(a_seconds_bucket{job=~"x_total", le!="1e3"}[5m])))"""),
                Is.EquivalentTo(new[] { "a_seconds_bucket" }));
            Assert.That(MetricNames("sum(rate(hits_total[1m])) / (sum(rate(hits_total[1m])) + sum(rate(misses_total[1m] offset 5m)))"),
                Is.EquivalentTo(new[] { "hits_total", "misses_total" }));
            Assert.That(MetricNames("sum(x) without (instance) > bool 1e3 and on (job) group_left y:recorded"), Is.EquivalentTo(new[] { "x", "y:recorded" }));
            Assert.That(MetricNames("""label_values(proxysel_connections_active{job=~"$job"}, instance)"""), Is.EquivalentTo(new[] { "proxysel_connections_active", "instance" }),
                "a variable query is not PromQL: the test takes its selector apart (VariableQuery)");
        });
    }

    [Test]
    public async Task Dashboard_AgainstARealScrapeAndPrometheus_EveryExpressionNamesExportedSeriesAndShowsTheTraffic()
    {
        var dashboard = await DashboardAsync();
        var (expressions, variableQueries) = Queries(dashboard);
        Assert.That(expressions, Has.Count.GreaterThanOrEqualTo(8), "a panel for each figure the issue asks for");

        await using var lab = await ProxyLab.StartAsync();
        lab.WriteFile("file.bin", 256 * 1024);
        // Two servers behind the proxy: TCP-only nginx on the v4 address (the MPTCP client's connection is intercepted),
        // an MPTCP python server on the v6 one (the proxy steps aside: released after its probe, then passed from the cache).
        await lab.StartNginxInAsync(lab.Topology.Server, [TwoPathTopology.ServerV4]);
        await StartMptcpServerAsync(lab);
        // The longest probe timeout: this test needs the decisions to exist, not fast probes on a loaded machine. A control
        // socket of its own: the default one is shared by every daemon on this machine.
        var control = Path.Combine(lab.Directory, "control.sock");
        var proxy = await lab.StartProxyAsync("--set", "Telemetry:Prometheus:Endpoint=" + ScrapeEndpoint, "--set", "Proxy:ProbeTimeout=400ms",
            "--set", "Proxy:ControlSocket=" + control);
        await StartPrometheusAsync(lab);

        // Round 1 creates the series: the first sample of a series already holds its count, so a rate sees only what
        // comes after Prometheus has it.
        for (int attempt = 1; ; attempt++)
        {
            await CurlAsync(lab, v6: false, $"intercepted{attempt}.out");
            if (await ScrapeAsync(lab, ["intercept"], TimeSpan.FromSeconds(5)) is not null)
            {
                break;
            }

            // Seen at load 12 on 2 cores: the probe's answer came after the timeout, so the SYN was released; the cache,
            // taught by that late answer, intercepts the next connection without a probe.
            Assert.That(attempt, Is.LessThan(3), "no connection intercepted in 3 tries: " + proxy.Output);
        }

        await CurlAsync(lab, v6: true, "released.out");
        await CurlAsync(lab, v6: true, "passed.out");
        await WaitForRelaysAsync(proxy, 1);
        var scrape = await ScrapeAsync(lab, ["intercept", "release", "pass"], ProxyLab.Timeout)
            ?? throw new AssertionException("the scrape did not show an intercepted, a released and a passed connection: " + proxy.Output);
        var names = ScrapedNames(scrape);
        var labels = ScrapedLabels(scrape).Concat(TargetLabels).ToHashSet(StringComparer.Ordinal);
        TestContext.Progress.WriteLine("scraped: " + string.Join(' ', names.Order(StringComparer.Ordinal)));
        foreach (var name in names)
        {
            await EvaluateAsync(lab, $"count({name})", values => values.Count > 0);
        }

        // Round 2 moves every figure after Prometheus has its series: an intercepted connection from the cache (a hit,
        // relayed: bytes, subflows); then, the cache flushed, a probe to the MPTCP server (a miss, a held SYN's verdict)
        // and a pass from the cache (a hit). No probe toward the TCP-only server: on a loaded machine it may time out.
        await CurlAsync(lab, v6: false, "intercepted-again.out");
        var flush = await LabCommand.RunAsync("dotnet", [ProxyLab.ProxyselDll, "cache", "flush", "--socket", control], ProxyLab.Timeout);
        Assert.That(flush.ExitCode, Is.Zero, flush.StdErr + flush.StdOut);
        await CurlAsync(lab, v6: true, "released-again.out");
        await CurlAsync(lab, v6: true, "passed-again.out");
        await WaitForRelaysAsync(proxy, 2);

        foreach (var (title, expr, legend) in expressions)
        {
            var query = Substitute(expr);
            var referenced = MetricNames(query);
            var grouping = GroupingLabels(query).Concat(LegendLabels(legend)).ToList();
            Assert.Multiple(() =>
            {
                Assert.That(referenced, Is.Not.Empty, $"{title}: {expr} names no series");
                Assert.That(referenced.Except(names), Is.Empty, $"{title}: {expr} names series the daemon does not export");
                Assert.That(grouping.Except(labels), Is.Empty, $"{title}: {expr} groups or labels by a label no series has");
            });

            // What this lab's traffic moves shows above zero; held connections (none once the transfers ended) and queue
            // drops (none at this rate) show a number: zero, not an empty panel or NaN.
            bool mayBeZero = ZeroPanels.Contains(title);
            var values = await EvaluateAsync(lab, query,
                v => v.Count > 0 && v.All(double.IsFinite) && (mayBeZero || v.Any(x => x > 0)));
            TestContext.Progress.WriteLine($"{title}: {query} -> {string.Join(", ", values.Select(v => v.ToString(CultureInfo.InvariantCulture)))}");
        }

        foreach (var (name, definition) in variableQueries)
        {
            var match = VariableQuery().Match(Substitute(definition));
            Assert.That(match.Success, Is.True, $"variable {name}: {definition} is not label_values(selector, label)");
            var selector = match.Groups["selector"].Value;
            var label = match.Groups["label"].Value;
            Assert.Multiple(() =>
            {
                Assert.That(MetricNames(selector).Except(names), Is.Empty, $"variable {name}: {definition}");
                Assert.That(labels, Does.Contain(label), $"variable {name}: {definition}");
            });
            await EvaluateAsync(lab, $"count by ({label}) ({selector})", v => v.Count > 0);
        }
    }

    /// <summary>The panels' PromQL (title, expression, legend; rows' panels too) and the query variables' definitions.</summary>
    private static (List<(string Title, string Expr, string Legend)> Expressions, List<(string Name, string Definition)> Variables) Queries(JsonElement dashboard)
    {
        var expressions = new List<(string, string, string)>();
        void Walk(JsonElement panels)
        {
            foreach (var panel in panels.EnumerateArray())
            {
                if (panel.TryGetProperty("panels", out var nested))
                {
                    Walk(nested);
                }

                if (!panel.TryGetProperty("targets", out var targets))
                {
                    continue;
                }

                var title = panel.GetProperty("title").GetString()!;
                Assert.That(panel.GetProperty("datasource").GetProperty("uid").GetString(), Is.EqualTo("${datasource}"), title);
                foreach (var target in targets.EnumerateArray())
                {
                    var legend = target.TryGetProperty("legendFormat", out var l) ? l.GetString() ?? "" : "";
                    expressions.Add((title, target.GetProperty("expr").GetString()!, legend));
                }
            }
        }

        Walk(dashboard.GetProperty("panels"));
        var variables = new List<(string, string)>();
        var list = dashboard.GetProperty("templating").GetProperty("list").EnumerateArray().ToList();
        Assert.That(list.Any(v => v.GetProperty("name").GetString() == "datasource" && v.GetProperty("type").GetString() == "datasource"
            && v.GetProperty("query").GetString() == "prometheus"), Is.True, "the datasource is a variable of type prometheus");
        foreach (var variable in list.Where(v => v.GetProperty("type").GetString() == "query"))
        {
            variables.Add((variable.GetProperty("name").GetString()!, variable.GetProperty("definition").GetString()!));
        }

        return (expressions, variables);
    }

    /// <summary>
    /// The metric names an expression selects: identifiers outside strings, label matchers, ranges and grouping
    /// clauses, not followed by "(" (functions, aggregations) and not PromQL keywords.
    /// </summary>
    internal static IReadOnlySet<string> MetricNames(string expr)
    {
        var text = StringLiteral().Replace(expr, "\"\"");
        text = LabelMatchers().Replace(text, " ");
        text = Ranges().Replace(text, " ");
        text = GroupingClause().Replace(text, " ");
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (Match m in Identifier().Matches(text))
        {
            var rest = text.AsSpan(m.Index + m.Length).TrimStart();
            if ((rest.Length == 0 || rest[0] != '(') && !Keywords.Contains(m.Value))
            {
                names.Add(m.Value);
            }
        }

        return names;
    }

    private static IEnumerable<string> GroupingLabels(string expr) =>
        GroupingClause().Matches(StringLiteral().Replace(expr, "\"\"")).SelectMany(m => m.Groups["labels"].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    private static IEnumerable<string> LegendLabels(string legend) => LegendLabel().Matches(legend).Select(m => m.Groups[1].Value);

    private static string Substitute(string expr)
    {
        foreach (var (variable, value) in Variables)
        {
            expr = expr.Replace(variable, value, StringComparison.Ordinal);
        }

        Assert.That(expr, Does.Not.Contain("$"), "every dashboard variable has a value in this test");
        return expr;
    }

    /// <summary>Series names of a text exposition (histograms' _bucket, _sum and _count included).</summary>
    private static HashSet<string> ScrapedNames(string scrape) =>
        [.. scrape.Split('\n').Where(l => l.Length > 0 && l[0] != '#').Select(l => l[..l.IndexOfAny(['{', ' '])])];

    private static HashSet<string> ScrapedLabels(string scrape) =>
        [.. scrape.Split('\n').Where(l => l.Length > 0 && l[0] != '#').SelectMany(l => ScrapeLabel().Matches(l).Select(m => m.Groups[1].Value))];

    /// <summary>The daemon's endpoint, once it shows every decision in <paramref name="decisions"/>; null after <paramref name="timeout"/>.</summary>
    private static async Task<string?> ScrapeAsync(ProxyLab lab, string[] decisions, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var r = await lab.Topology.Proxy.RunAsync("curl", ["-sf", ScrapeEndpoint], ProxyLab.Timeout);
            // The counter's series, not the held-now gauge (which always carries decision "intercept").
            var counted = r.StdOut.Split('\n').Where(l => l.StartsWith("proxysel_connections_total{", StringComparison.Ordinal)).ToList();
            if (r.ExitCode == 0 && decisions.All(d => counted.Any(l => l.Contains($"proxysel_decision=\"{d}\"", StringComparison.Ordinal))))
            {
                return r.StdOut;
            }

            if (DateTime.UtcNow > deadline)
            {
                return null;
            }

            await Task.Delay(500);
        }
    }

    /// <summary>
    /// An instant query that must be valid PromQL (HTTP 200, status success; a parse error is HTTP 400) and whose sample
    /// values satisfy <paramref name="expected"/> within the lab's timeout (polled: Prometheus scrapes every second).
    /// </summary>
    private static async Task<IReadOnlyList<double>> EvaluateAsync(ProxyLab lab, string query, Func<IReadOnlyList<double>, bool> expected)
    {
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        while (true)
        {
            var r = await lab.Topology.Proxy.RunAsync("curl",
                ["-sG", "-w", "\n%{http_code}", $"http://{PrometheusAddress}/api/v1/query", "--data-urlencode", "query=" + query], ProxyLab.Timeout);
            Assert.That(r.ExitCode, Is.Zero, $"{query}: curl {r.StdErr}");
            var newline = r.StdOut.LastIndexOf('\n');
            var body = r.StdOut[..newline];
            var code = int.Parse(r.StdOut[(newline + 1)..], CultureInfo.InvariantCulture);
            Assert.That(code, Is.EqualTo(200), $"{query}: Prometheus refused it: {body}");
            using var json = JsonDocument.Parse(body);
            Assert.That(json.RootElement.GetProperty("status").GetString(), Is.EqualTo("success"), body);
            // An instant vector: [{ "metric": {...}, "value": [ <time>, "<value>" ] }, ...]; "NaN" parses to NaN.
            var values = json.RootElement.GetProperty("data").GetProperty("result").EnumerateArray()
                .Select(s => double.Parse(s.GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture)).ToList();
            if (expected(values))
            {
                return values;
            }

            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"{query}: not the expected values within {ProxyLab.Timeout}: {body}");
            }

            await Task.Delay(500);
        }
    }

    private static async Task CurlAsync(ProxyLab lab, bool v6, string output)
    {
        var curl = await lab.CurlAsync(ProxyLab.Url(v6, "file.bin"), mptcp: true, Path.Combine(lab.Directory, output));
        Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
    }

    /// <summary>Waits (bounded) until the proxy has logged <paramref name="count"/> completed relays: their bytes are counted.</summary>
    private static async Task WaitForRelaysAsync(LabProcess proxy, int count)
    {
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        while (ProxyLab.Lines(proxy, "relay ").Count(l => l.Contains("Completed", StringComparison.Ordinal)) < count)
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"fewer than {count} completed relays within {ProxyLab.Timeout}: {proxy.Output}");
            }

            await Task.Delay(100);
        }
    }

    private static async Task<JsonElement> DashboardAsync()
    {
        var path = Path.Combine(RepositoryPaths.Samples, "grafana", "proxysel-dashboard.json");
        using var json = JsonDocument.Parse(await File.ReadAllTextAsync(path));
        return json.RootElement.Clone();
    }

    /// <summary>python3's HTTP server under mptcpize on the server's v6 address, port 80, serving the lab's www/.</summary>
    private static async Task StartMptcpServerAsync(ProxyLab lab)
    {
        var server = lab.Topology.Server;
        var process = server.StartProcess("mptcpize",
            ["run", "python3", "-m", "http.server", "80", "--bind", TwoPathTopology.ServerV6, "--directory", Path.Combine(lab.Directory, "www")]);
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        while (true)
        {
            var listening = await server.CheckAsync("ss", ["-Hltn", $"src [{TwoPathTopology.ServerV6}]:80"], ProxyLab.Timeout);
            if (listening.Trim().Length > 0)
            {
                return;
            }

            if (process.HasExited || DateTime.UtcNow > deadline)
            {
                throw new InvalidOperationException($"the MPTCP server did not start: {process.Output}");
            }

            await Task.Delay(50);
        }
    }

    /// <summary>Prometheus in the proxy namespace with samples/prometheus.yml (intervals 1 s) and its rules, scraping the daemon.</summary>
    private static async Task StartPrometheusAsync(ProxyLab lab)
    {
        var directory = Directory.CreateDirectory(Path.Combine(lab.Directory, "prometheus")).FullName;
        var config = Path.Combine(directory, "prometheus.yml");
        var sample = await File.ReadAllTextAsync(Path.Combine(RepositoryPaths.Samples, "prometheus.yml"));
        await File.WriteAllTextAsync(config, sample.Replace("15s", "1s", StringComparison.Ordinal));
        File.Copy(Path.Combine(RepositoryPaths.Samples, "proxysel-rules.yml"), Path.Combine(directory, "proxysel-rules.yml"));
        var process = lab.Topology.Proxy.StartProcess("prometheus",
        [
            "--config.file=" + config, "--storage.tsdb.path=" + Path.Combine(directory, "data"), "--web.listen-address=" + PrometheusAddress,
            "--log.level=warn",
        ]);
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        while (DateTime.UtcNow < deadline && !process.HasExited)
        {
            var ready = await lab.Topology.Proxy.RunAsync("curl", ["-sf", $"http://{PrometheusAddress}/-/ready"], ProxyLab.Timeout);
            if (ready.ExitCode == 0)
            {
                return;
            }

            await Task.Delay(200);
        }

        throw new InvalidOperationException($"prometheus did not become ready: {process.Output}");
    }

    [GeneratedRegex("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'")]
    private static partial Regex StringLiteral();

    [GeneratedRegex(@"\{[^}]*\}")]
    private static partial Regex LabelMatchers();

    [GeneratedRegex(@"\[[^\]]*\]")]
    private static partial Regex Ranges();

    [GeneratedRegex(@"\b(?:by|without|on|ignoring|group_left|group_right)\s*\((?<labels>[^)]*)\)")]
    private static partial Regex GroupingClause();

    [GeneratedRegex(@"(?<![\w:.$])[a-zA-Z_:][\w:]*")]
    private static partial Regex Identifier();

    [GeneratedRegex(@"\{\{\s*(\w+)\s*\}\}")]
    private static partial Regex LegendLabel();

    [GeneratedRegex(@"(\w+)=""")]
    private static partial Regex ScrapeLabel();

    [GeneratedRegex(@"^label_values\((?<selector>.+),\s*(?<label>\w+)\)$")]
    private static partial Regex VariableQuery();
}
