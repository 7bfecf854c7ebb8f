using System.Text.Json.Nodes;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Hosting;

/// <summary>
/// Issue 6: <c>proxysel status</c> shows a held connection with its two subflows while a transfer runs, and
/// <c>proxysel cache show|flush</c> list and empty the capability cache, over a control socket of mode 0660.
/// </summary>
[TestFixture]
[NonParallelizable]
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class StatusTests
{
    private const int Size = 16 * 1024 * 1024;

    [Test]
    public async Task Status_TransferRunning_ShowsTheHeldConnectionWithTwoSubflowsAndCacheShowFlushWork()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", Size);
        await lab.StartNginxAsync();
        var socket = Path.Combine(lab.Directory, "run", "proxysel.sock");
        var proxy = await ProxyLab.StartProxyInAsync(lab.Topology.Proxy, "--set", "Proxy:ControlSocket=" + socket);

        // About 5 s at 3 MB/s: long enough to look at it.
        var output = Path.Combine(lab.Directory, "download.bin");
        var transfer = lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(60), "--limit-rate", "3M");
        await ProxyLab.WaitForLineAsync(proxy, "accepted ", "token=");
        var (held, statusJson) = await ControlCli.WaitForSubflowsAsync(lab, socket, 2);
        var table = await ControlCli.ControlAsync(lab, "status", "--socket", socket);
        var cached = JsonNode.Parse(await ControlCli.ControlAsync(lab, "cache", "show", "--socket", socket, "--json"))!;
        var cacheTable = await ControlCli.ControlAsync(lab, "cache", "show", "--socket", socket);
        var flushed = JsonNode.Parse(await ControlCli.ControlAsync(lab, "cache", "flush", "--socket", socket, "--json"))!;
        var afterFlush = JsonNode.Parse(await ControlCli.ControlAsync(lab, "cache", "show", "--socket", socket, "--json"))!;
        var reload = await ProxySelection.Host.Control.ControlClient.SendAsync(socket, ProxySelection.Host.Control.ControlCommand.Reload, ProxyLab.Timeout);
        var socketMode = File.GetUnixFileMode(socket);
        var folderMode = File.GetUnixFileMode(Path.GetDirectoryName(socket)!);

        var curl = await transfer.WaitAsync(TimeSpan.FromSeconds(70));
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(statusJson);
        TestContext.Progress.WriteLine(table);
        TestContext.Progress.WriteLine(cacheTable);
        TestContext.Progress.WriteLine(proxy.Output);

        var subflows = held["subflows"]!.AsArray().Select(s => (string)s!["remote"]!).ToList();
        var entries = cached["entries"]!.AsArray();
        Assert.Multiple(() =>
        {
            Assert.That((string?)held["client"], Does.StartWith(TwoPathTopology.ClientPath1V4 + ":"));
            Assert.That((string?)held["server"], Is.EqualTo(TwoPathTopology.ServerV4 + ":80"));
            Assert.That((string?)held["role"], Is.EqualTo("downgrade"));
            Assert.That((string?)held["reason"], Is.EqualTo("ProbeAnswered"), "held when its probe found a TCP-only server");
            Assert.That((string?)held["mptcp_status"], Is.EqualTo("Active"));
            Assert.That((long)held["bytes_down"]!, Is.GreaterThan(0));
            Assert.That((double)held["age_seconds"]!, Is.GreaterThan(0));
            Assert.That((int)held["subflow_count"]!, Is.EqualTo(2));
            Assert.That(subflows, Has.Some.StartsWith(TwoPathTopology.ClientPath1V4 + ":").And.Some.StartsWith(TwoPathTopology.ClientPath2V4 + ":"),
                "one subflow per path");
            Assert.That(table, Does.Contain("held connections: 1").And.Contains("subflow " + TwoPathTopology.ServerV4 + ":80 <-> " + TwoPathTopology.ClientPath2V4));
            Assert.That(entries.Select(e => ((string?)e!["destination"], (string?)e["state"])), Does.Contain((TwoPathTopology.ServerV4 + ":80", "TcpOnly")));
            Assert.That(cacheTable, Does.Contain(TwoPathTopology.ServerV4 + ":80").And.Contains("TcpOnly"));
            Assert.That((int)flushed["removed"]!, Is.GreaterThanOrEqualTo(1));
            Assert.That(afterFlush["entries"]!.AsArray(), Is.Empty, "cache flush emptied it");
            Assert.That(reload.Ok, Is.True, reload.Error);
            Assert.That((bool?)reload.Reply["applied"], Is.True);
            Assert.That((string?)reload.Reply["message"], Does.StartWith("proxysel: reloaded policy=First"), "the control socket's reload is SIGHUP's");
            Assert.That(ProxyLab.Lines(proxy, "proxysel: reloaded policy=First"), Has.Count.EqualTo(1));
            Assert.That(socketMode, Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite), "0660");
            Assert.That(folderMode, Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute), "0750");
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha), "the transfer was not disturbed by the status calls");
            Assert.That(Path.Exists(socket), Is.False, "the socket file goes with the daemon");
        });
    }
}

/// <summary>The control verbs run as a user would, from the proxy namespace.</summary>
internal static class ControlCli
{
    /// <summary>Polls <c>proxysel status --json</c> until one held connection reports <paramref name="subflows"/> subflows.</summary>
    internal static async Task<(JsonObject Held, string Json)> WaitForSubflowsAsync(ProxyLab lab, string socket, int subflows)
    {
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        string last = "";
        while (DateTime.UtcNow < deadline)
        {
            last = await ControlCli.ControlAsync(lab, "status", "--socket", socket, "--json");
            var connections = JsonNode.Parse(last)!["connections"]!.AsArray();
            if (connections.Count == 1 && connections[0]!["subflows"]!.AsArray().Count >= subflows && (int)connections[0]!["subflow_count"]! >= subflows)
            {
                return (connections[0]!.AsObject(), last);
            }

            await Task.Delay(100);
        }

        throw new TimeoutException($"no held connection with {subflows} subflows; last status: {last}");
    }

    /// <summary>Runs a proxysel control verb; its stdout, which must be a success.</summary>
    internal static async Task<string> ControlAsync(ProxyLab lab, params string[] args)
    {
        var result = await lab.Topology.Proxy.RunAsync("dotnet", [ProxyLab.ProxyselDll, .. args], ProxyLab.Timeout);
        Assert.That(result.ExitCode, Is.Zero, $"proxysel {string.Join(' ', args)}: {result.StdErr}");
        return result.StdOut;
    }
}
