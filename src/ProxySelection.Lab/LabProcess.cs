using System.Diagnostics;
using System.Text;

namespace ProxySelection.Lab;

/// <summary>
/// A long-running process started inside a namespace (<c>setsid ip netns exec NS ...</c>), leader of its own process
/// group so that stopping it also stops whatever it forked. Signals go only to the pid this object started and its
/// group, never by name. Output (stdout and stderr, interleaved by line) is kept, bounded to the last 1 MiB.
/// </summary>
public sealed class LabProcess : IAsyncDisposable
{
    private const int MaxOutputChars = 1 << 20;
    private readonly Process process;
    private readonly StringBuilder output = new();
    private readonly Lock gate = new();
    private readonly List<(string Text, TaskCompletionSource Seen)> waiters = [];
    private int? exitCode;

    private LabProcess(Process process, string description)
    {
        this.process = process;
        Description = description;
    }

    /// <summary>The command line, for messages.</summary>
    public string Description { get; }

    /// <summary>The pid of the started process (also its process group id).</summary>
    public int Pid => process.Id;

    public bool HasExited => exitCode is not null || process.HasExited;

    /// <summary>The exit code once exited (killed by a signal: 128 + signal number); null while running.</summary>
    public int? ExitCode => exitCode ?? (process.HasExited ? process.ExitCode : null);

    /// <summary>Everything printed so far (at least the last 1 MiB, at most 2 MiB).</summary>
    public string Output
    {
        get
        {
            lock (gate)
            {
                return output.ToString();
            }
        }
    }

    internal static LabProcess Start(string? namespaceName, string file, IEnumerable<string> args)
    {
        // setsid makes the child a session and process-group leader without forking (a child of the runtime is
        // not a group leader), so the pid we hold is the program's pid and its group id.
        var psi = new ProcessStartInfo("setsid")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        if (namespaceName is not null)
        {
            foreach (var a in (string[])["ip", "netns", "exec", namespaceName])
            {
                psi.ArgumentList.Add(a);
            }
        }

        psi.ArgumentList.Add(file);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        var lp = new LabProcess(process, LabCommand.Describe(file, psi.ArgumentList.Skip(namespaceName is null ? 1 : 5)));
        process.OutputDataReceived += (_, e) => lp.Append(e.Data);
        process.ErrorDataReceived += (_, e) => lp.Append(e.Data);
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            process.Dispose();
            throw new LabException($"cannot start '{lp.Description}': {e.Message}", e);
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return lp;
    }

    /// <summary>Waits until the output contains <paramref name="text"/>; throws <see cref="LabException"/> on timeout or exit.</summary>
    public async Task WaitForOutputAsync(string text, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        TaskCompletionSource seen;
        lock (gate)
        {
            if (output.ToString().Contains(text, StringComparison.Ordinal))
            {
                return;
            }

            seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            waiters.Add((text, seen));
        }

        var exited = process.WaitForExitAsync(cancellationToken);
        var first = await Task.WhenAny(seen.Task, exited, Task.Delay(timeout, cancellationToken)).ConfigureAwait(false);
        if (first == seen.Task)
        {
            return;
        }

        cancellationToken.ThrowIfCancellationRequested();
        if (Output.Contains(text, StringComparison.Ordinal))
        {
            return;
        }

        throw new LabException(first == exited
            ? $"'{Description}' exited ({process.ExitCode}) before printing '{text}': {Output}"
            : $"'{Description}' did not print '{text}' within {timeout}: {Output}");
    }

    /// <summary>Waits for the process to exit by itself; throws <see cref="LabException"/> on timeout.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new LabException($"'{Description}' still running after {timeout}");
        }

        // The parameterless wait drains the redirected output after exit.
        process.WaitForExit();
        exitCode = process.ExitCode;
        return process.ExitCode;
    }

    /// <summary>Sends <paramref name="signal"/> to this process's group (only while the leader has not been reaped).</summary>
    public bool Signal(int signal)
    {
        if (HasExited)
        {
            return false;
        }

        // A negative pid addresses the group this process leads.
        return LabNative.kill(-process.Id, signal) == 0 || LabNative.kill(process.Id, signal) == 0;
    }

    /// <summary>
    /// Stops the process: <paramref name="signal"/> (SIGTERM by default) to its group, then SIGKILL if it has not
    /// exited after <paramref name="grace"/>. Safe to call more than once.
    /// </summary>
    public async Task StopAsync(TimeSpan? grace = null, int signal = LabNative.SigTerm)
    {
        if (exitCode is not null)
        {
            return;
        }

        if (process.HasExited)
        {
            process.WaitForExit();
            exitCode = process.ExitCode;
            return;
        }

        Signal(signal);
        using var cts = new CancellationTokenSource(grace ?? TimeSpan.FromSeconds(3));
        try
        {
            await process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            Signal(LabNative.SigKill);
            using var last = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            try
            {
                await process.WaitForExitAsync(last.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                throw new LabException($"'{Description}' (pid {process.Id}) survived SIGKILL for 5 s");
            }
        }

        process.WaitForExit();
        exitCode = process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
        }
        finally
        {
            process.Dispose();
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        List<TaskCompletionSource>? done = null;
        lock (gate)
        {
            output.Append(line).Append('\n');
            // Trimmed when twice the bound, not on every line past it: a 1 MiB move per line could not keep up with a
            // proxy logging thousands of SYNs per second (the pipe filled and the proxy's log writes blocked its hook).
            if (output.Length > 2 * MaxOutputChars)
            {
                output.Remove(0, output.Length - MaxOutputChars);
            }

            for (var i = waiters.Count - 1; i >= 0; i--)
            {
                if (line.Contains(waiters[i].Text, StringComparison.Ordinal) || output.ToString().Contains(waiters[i].Text, StringComparison.Ordinal))
                {
                    (done ??= []).Add(waiters[i].Seen);
                    waiters.RemoveAt(i);
                }
            }
        }

        done?.ForEach(s => s.TrySetResult());
    }
}
