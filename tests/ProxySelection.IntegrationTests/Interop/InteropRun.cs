using System.Text;
using System.Text.Json;
using ProxySelection.LabTool;
using ProxySelection.IntegrationTests.Proxy;

namespace ProxySelection.IntegrationTests.Interop;

/// <summary>One in-process run of <c>proxysel interop ... --json</c>: exit code, the printed table and the JSON of its last line.</summary>
internal sealed record InteropRun(int ExitCode, string Output, string Error, JsonElement Json)
{
    /// <summary>The proxies run <c>dotnet proxysel.dll</c> from the test's output (the test host is not <c>proxysel</c>).</summary>
    public static async Task<InteropRun> StartAsync(TimeSpan limit, params string[] args)
    {
        string[] binary = args.Any(a => a == "--proxy-binary") ? [] : ["--proxy-binary", ProxyLab.ProxyselDll];
        using var stdout = new MemoryStream();
        using var stderr = new StringWriter();
        int exit = await Task.Run(() => Cli.Run(["interop", "--json", .. binary, .. args], stdout, stderr)).WaitAsync(limit);
        var output = Encoding.UTF8.GetString(stdout.ToArray());
        TestContext.Progress.WriteLine(output);
        var last = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? "";
        Assert.That(last, Does.StartWith("{"), $"the last line is the JSON object; stderr: {stderr}");
        using var document = JsonDocument.Parse(last);
        return new InteropRun(exit, output, stderr.ToString(), document.RootElement.Clone());
    }

    public IReadOnlyList<JsonElement> Cells => [.. Json.GetProperty("cells").EnumerateArray()];

    public JsonElement Cell(string name) => Cells.Single(c => c.GetProperty("name").GetString() == name);
}
