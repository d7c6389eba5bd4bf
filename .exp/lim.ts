console.log(Deno.readTextFileSync("/proc/self/limits").split("\n").filter(l=>l.includes("open files")).join());
